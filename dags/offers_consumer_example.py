"""
### Offers consumer (example)

Runs every time `trackier_offer_sync` publishes fresh offers: it is scheduled on the `offers` Asset
(`trackier-offer-sync://offers`), not on a clock. The sync's final task puts the whole
`sync_result` (status, added, updated, unchanged, deactivated, rejected, error rate, run id,
measurements ...) in the Asset event's `extra`; this DAG reads the counts from the event that
triggered it and logs and returns them.

Copy it as the start of a downstream job (refresh a cache, re-index search, notify partners):
check `status` and the counts first, e.g. skip the work when nothing was added or updated.
If several syncs finish before this DAG runs, Airflow hands it all their events at once.
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.sdk import Asset, dag, task

from include.offer_sync.constants import OFFERS_ASSET_NAME, OFFERS_ASSET_URI
from include.offer_sync.contracts import RESULT_KEYS

log = logging.getLogger(__name__)

#: The same name and URI as the sync DAG's outlet: that is the link (a copy in another repository must
#: spell them exactly so: "offers", "trackier-offer-sync://offers").
OFFERS_ASSET = Asset(name=OFFERS_ASSET_NAME, uri=OFFERS_ASSET_URI)
#: The keys read from the event's extra: the result contract (README "The result contract"). A copy of
#: this example in another repository spells them out: ``include/offer_sync/contracts.py`` lists them.
COUNT_KEYS = RESULT_KEYS


@dag(
    dag_id="offers_consumer_example",
    schedule=[OFFERS_ASSET],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["offers", "example"],
    doc_md=__doc__,
)
def offers_consumer_example() -> None:
    @task
    def read_sync_counts(triggering_asset_events: Any = None) -> dict[str, Any]:
        """Read the counts of the sync run(s) that triggered this run from the `offers` Asset events."""
        events = list(triggering_asset_events[OFFERS_ASSET]) if triggering_asset_events else []
        syncs = [{key: (event.extra or {}).get(key) for key in COUNT_KEYS} for event in events]
        if not syncs:
            log.info("no offers event triggered this run (started by hand?): nothing to read")
            return {"events": 0, "syncs": [], "latest": None}
        for sync in syncs:
            log.info(
                "offers sync %s: %s, %s added, %s updated, %s unchanged, %s deactivated, %s rejected",
                sync["run_id"],
                sync["status"],
                sync["added"],
                sync["updated"],
                sync["unchanged"],
                sync["deactivated"],
                sync["rejected"],
            )
        return {"events": len(syncs), "syncs": syncs, "latest": syncs[-1]}

    read_sync_counts()


offers_consumer_example()
