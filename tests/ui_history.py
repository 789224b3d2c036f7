"""A catalogue with a history, for the Offer Sync page's History, Run detail and Offer lookup views.

``build_history`` runs four syncs with the in-process pipeline (``devtools/inline.py``:
the same task bodies the DAG runs, in the same order) against an offers database and a fake
Trackier, changing the catalogue in between, and records the alerts those runs break through the
real rules (``alerts.evaluate`` with thresholds from the environment, stored by
``alerts_insert.sql``):

1. the first sync: every campaign added;
2. 5 added, 3 removed (deactivated), payouts changed on 5%, one title that is markup
   (``<img src=x onerror=alert(1)>``), one with quotes, an RTL override, tabs and newlines in its
   description, and one record rejected (a currency that is markup; its id starts with ``=`` like a
   spreadsheet formula);
3. 2 more removed and one title changed to one with ``%`` and ``_`` (LIKE wildcards, literally);
4. a failed run: one campaigns page fails on every try, the sweep's error rate trips the
   circuit breaker, and the failure is recorded the way the DAG's failure callback records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pydantic import SecretStr

XSS = "<img src=x onerror=alert(1)>"
#: Quotes, markup, an RTL override (U+202E ... U+202C): valid in a title, must show as typed.
TRICKY_TITLE = 'Zoë\'s "Quoted" \u202eReversed\u202c <b>bold</b> & co'
TRICKY_DESCRIPTION = "Line one\n\tindented line two\nline three"
FORMULA_ID = '=HYPERLINK("http://evil.example","click")'
#: LIKE wildcards that a title search must match literally.
RENAMED_TITLE = "Renamed: 100% off_weekend"


@dataclass
class History:
    """What ``build_history`` did: run ids in order and the offers to look for."""

    run_ids: list[str]
    failed_run_id: str
    removed_in_run2: list[str]
    xss_offer: str
    tricky_offer: str
    renamed_in_run3: str
    results: list[dict[str, Any]] = field(default_factory=list)


def _record_alerts(db_url: str, result: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    from include.offer_sync.alerts.rules import Thresholds, evaluate
    from include.offer_sync.db import load_sql

    with psycopg.connect(db_url, autocommit=True) as conn:
        for alert in evaluate(result, Thresholds.from_env(environ)):
            conn.execute(load_sql("alerts_insert"), alert.row())  # type: ignore[arg-type]  # our own .sql file


def build_history(fake: Any, db_url: str, api_key: str, environ: Mapping[str, str]) -> History:
    """Four syncs of ``fake``'s catalogue into ``db_url`` (see the module docstring)."""
    from devtools.inline import run_sync
    from include.offer_sync.errors import SweepRejectedError
    from include.offer_sync.load.runs import record_failure
    from include.offer_sync.settings import DatabaseSettings, TrackierSettings

    db = DatabaseSettings(conninfo=db_url)
    api = TrackierSettings(
        base_url=fake.url,
        api_key=SecretStr(api_key),
        page_size=50,
        requests_per_second=0,
        backoff_base_s=0.01,
        backoff_max_s=0.02,
        max_retries=1,
        pages_per_shard=3,
    )
    runs = [f"scheduled__2026-11-2{day}T02:00:00+00:00" for day in range(1, 4)] + ["manual__2026-11-24T09:30:00+00:00"]
    results = []

    results.append(run_sync(db, api, runs[0]))
    _record_alerts(db_url, results[-1], environ)

    ids = [str(i) for i in fake.catalogue.campaign_ids()]
    xss_offer, tricky_offer, formula_victim, renamed = ids[10], ids[11], ids[12], ids[13]
    fake.mutate("add_campaigns", count=5)
    removed = [str(i) for i in fake.mutate("remove_campaigns", count=3)["removed"]]
    fake.mutate("change_payouts", fraction=0.05, seed=3)
    fake.mutate("set_campaign", id=xss_offer, fields={"title": XSS})
    fake.mutate("set_campaign", id=tricky_offer, fields={"title": TRICKY_TITLE, "description": TRICKY_DESCRIPTION})
    fake.mutate("set_campaign", id=formula_victim, fields={"id": FORMULA_ID, "currency": XSS})
    results.append(run_sync(db, api, runs[1]))
    _record_alerts(db_url, results[-1], environ)

    fake.mutate("remove_campaigns", count=2)
    fake.mutate("set_campaign", id=renamed, fields={"title": RENAMED_TITLE})
    results.append(run_sync(db, api, runs[2]))
    _record_alerts(db_url, results[-1], environ)

    fake.configure(script=[{"path": "/v2/campaigns", "page": 2, "times": -1, "fault": "500"}])
    try:
        run_sync(db, api, runs[3])
        raise AssertionError("the fourth sync was meant to fail")
    except SweepRejectedError as exc:
        failed = record_failure(db, runs[3], str(exc))
        assert failed is not None
        assert failed["status"] == "failed"
        results.append(failed)
        _record_alerts(db_url, failed, environ)
    finally:
        fake.configure(script=[])
    return History(
        run_ids=runs,
        failed_run_id=runs[3],
        removed_in_run2=removed,
        xss_offer=xss_offer,
        tricky_offer=tricky_offer,
        renamed_in_run3=renamed,
        results=results,
    )
