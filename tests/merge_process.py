"""The merge task's body in a process of its own, for tests that kill or stop it mid-merge.

``python -m tests.merge_process <staged.json>`` runs ``tasks.merge_catalogue`` and ``tasks.publish_result``
exactly as the DAG's ``merge_catalogue`` and ``publish_result`` tasks do, with the staged run
(``run``, ``sweep``, ``summaries``, ``params`` as they travel through XCom) and the database URL
read from the file, and prints the ``sync_result`` as JSON. Session settings come from the
environment (``OFFER_SYNC_*``), as in a task process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from include.offer_sync import tasks
from include.offer_sync.settings import DatabaseSettings


def main(path: str) -> None:
    staged = json.loads(Path(path).read_text())
    db = DatabaseSettings(conninfo=staged["db_url"])
    params = staged["params"]
    merged = tasks.merge_catalogue(
        db, staged["run"], staged["sweep"], deactivate_missing=params["deactivate_missing"], dry_run=params["dry_run"]
    )
    result = tasks.publish_result(db, staged["run"], staged["summaries"], staged["sweep"], merged)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
