"""
### Trackier offer sync

Pulls every advertiser and campaign from Trackier's v2 API and merges them into the `brands` and
`offers` tables of the `offers_db` PostgreSQL, nightly and on demand.

**Flow.** `start_sync` creates the tables if needed and opens the run's `sync_runs` row;
`plan_advertisers`/`plan_campaigns` probe the API and split the sweep into coarse shards (page
ranges when the API reports totals, one cursor stream per entity otherwise).
`extract_advertisers` and `extract_campaigns` are mapped over
those shards and run in parallel: each streams its pages, validates every record (pydantic) and
COPYs it into the run's own staging tables, rejects included with their reasons.
`check_sweep` resolves duplicates and orphans and trips the error-rate circuit breaker;
`merge_catalogue` merges brands and offers in one transaction with an audit trail (and refuses a
sweep older than one already merged: it would revert newer data);
`publish_result` closes the run, runs the alert checks and returns `sync_result`;
`emit_offers_event` emits the `offers` Asset event carrying `sync_result` and POSTs the completion
webhook, once per run: it is **skipped** for a dry run (nothing changed, downstream DAGs must not
run) and when the event was already emitted (a task cleared and run again).

**Code.** This file only wires: each task calls the function of the same name in
`include/offer_sync/tasks.py` (`plan_*` -> `plan_entity`, `extract_*` -> `extract_shard`), what each
returns is typed in `include/offer_sync/contracts.py`, names and defaults are in `constants.py`.

**Connections** (set with `AIRFLOW_CONN_TRACKIER_API` / `AIRFLOW_CONN_OFFERS_DB`):
`trackier_api` (HTTP: host = base URL, password = network API key, extra = `page_size`,
`pagination`, `requests_per_second` ...) and `offers_db` (Postgres).

**Params** (the Trigger form): dry run, page size, pagination style, max error rate, shard size,
whether a complete sweep deactivates offers that are gone. See the README for details.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, AsyncCallback, DeadlineAlert, DeadlineReference, Param, dag, get_current_context, task
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule

from include.offer_sync.constants import (
    API_POOL_ENV,
    API_TASKS_PER_ENTITY,
    DAG_ID,
    DAGRUN_TIMEOUT,
    DEADLINE_MINUTES_ENV,
    DEFAULT_API_POOL,
    DEFAULT_DEADLINE_MINUTES,
    DEFAULT_MAX_DEACTIVATE_RATE,
    DEFAULT_MAX_ERROR_RATE,
    DEFAULT_MAX_SHARDS,
    DEFAULT_PAGES_PER_SHARD,
    DEFAULT_RETRY_DELAY_S,
    DEFAULT_TASK_RETRIES,
    MAX_ERROR_RATE_ENV,
    MAX_MAX_SHARDS,
    MAX_PAGE_SIZE,
    MAX_PAGES_PER_SHARD,
    MAX_RETRY_DELAY,
    OFFERS_ASSET_NAME,
    OFFERS_ASSET_URI,
    RETRY_DELAY_ENV,
    TASK_RETRIES_ENV,
)
from include.offer_sync.schedule import schedule_from_env

OFFERS_ASSET = Asset(name=OFFERS_ASSET_NAME, uri=OFFERS_ASSET_URI)
#: The Airflow pool that caps concurrent API tasks (create it: `airflow pools set trackier_api 4 ...`).
API_POOL = os.environ.get(API_POOL_ENV, DEFAULT_API_POOL)
MAX_ERROR_RATE = float(os.environ.get(MAX_ERROR_RATE_ENV, str(DEFAULT_MAX_ERROR_RATE)))
#: A run not finished this many minutes after it was queued raises the `deadline` alert (0: off).
DEADLINE_MINUTES = float(os.environ.get(DEADLINE_MINUTES_ENV, str(DEFAULT_DEADLINE_MINUTES)))
#: Task retries and the first retry delay (it doubles, up to MAX_RETRY_DELAY).
TASK_RETRIES = int(os.environ.get(TASK_RETRIES_ENV, str(DEFAULT_TASK_RETRIES)))
RETRY_DELAY_S = float(os.environ.get(RETRY_DELAY_ENV, str(DEFAULT_RETRY_DELAY_S)))
#: When it runs on its own: OFFER_SYNC_SCHEDULE, a cron expression (UTC), a preset or "none" (default @daily).
SCHEDULE = schedule_from_env()

# A bad key, a blocked IP or a tripped circuit breaker will not be fixed by trying again. A deadlock
# or serialization failure is fixed by trying again at once (the database already rolled it back).
NO_RETRY_ON_FATAL = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception="include.offer_sync.errors.FatalSyncError",
            action=RetryAction.FAIL,
            reason="configuration, credentials or data problem: retrying cannot fix it",
        ),
        RetryRule(
            exception="include.offer_sync.errors.DatabaseConflictError",
            action=RetryAction.RETRY,
            retry_delay=timedelta(seconds=5),
            reason="deadlock or serialization failure: the database rolled the transaction back; run it again",
        ),
    ]
)


# Alert checks (include/offer_sync/alerts/callbacks.py, imported only when a callback runs).
def _on_run_success(context) -> None:
    from include.offer_sync.alerts.callbacks import on_run_success

    on_run_success(context)


def _on_run_failure(context) -> None:
    from include.offer_sync.alerts.callbacks import on_run_failure

    on_run_failure(context)


def _on_task_failure(context) -> None:
    from include.offer_sync.alerts.callbacks import on_task_failure

    on_task_failure(context)


def _on_task_retry(context) -> None:
    from include.offer_sync.alerts.callbacks import on_task_retry

    on_task_retry(context)


def _release_event_claim(context) -> None:
    # A failed try of emit_offers_event never got its Asset event recorded: let its retry emit it.
    from include.offer_sync.tasks import release_event_claim

    ti = context["ti"]
    release_event_claim(ti.run_id, ti.try_number)


def _under_dags_test() -> bool:
    """Whether this process is `airflow dags test` (or `python -m airflow dags test`)."""
    cli = (os.path.basename(sys.argv[0]), os.path.basename(os.path.dirname(sys.argv[0])))
    return "airflow" in cli and sys.argv[1:3] == ["dags", "test"]


def _deadline_alert() -> DeadlineAlert | None:
    """The run-level deadline (Airflow 3's replacement for SLA misses), or None when it cannot work.

    The scheduler notices the missed deadline and the triggerer runs the callback while the run is
    still going. None when OFFER_SYNC_DEADLINE_MINUTES is 0, and under `airflow dags test`: its runs
    are never queued, so no deadline is ever created there, and Airflow 3.3.2's dag.test() crashes at
    the end of a successful run of a DAG that has one (DagRun.update_state looks the alerts up by
    database id, but dag.test() hands it their unsaved definitions). Workaround for an Airflow bug
    (no upstream issue located; searched apache/airflow for "dag.test deadline" in November 2026):
    drop this helper when `airflow dags test` of a DAG with a deadline succeeds.
    """
    if DEADLINE_MINUTES <= 0 or _under_dags_test():
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=DEADLINE_MINUTES),
        callback=AsyncCallback(
            "include.offer_sync.alerts.callbacks.deadline_missed",
            kwargs={"threshold_s": DEADLINE_MINUTES * 60, "dag_id": DAG_ID},
        ),
    )


default_args = {
    "owner": "data-platform",
    "retries": TASK_RETRIES,
    "retry_delay": timedelta(seconds=RETRY_DELAY_S),
    "retry_exponential_backoff": True,
    "max_retry_delay": MAX_RETRY_DELAY,
    "retry_policy": NO_RETRY_ON_FATAL,
    "on_failure_callback": _on_task_failure,
    "on_retry_callback": _on_task_retry,
}


@dag(
    dag_id=DAG_ID,
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=DAGRUN_TIMEOUT,
    default_args=default_args,
    on_success_callback=_on_run_success,
    on_failure_callback=_on_run_failure,
    deadline=_deadline_alert(),
    tags=["trackier", "offers", "sync"],
    doc_md=__doc__,
    params={
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Fetch, validate and compute the counts, then roll the merge back: nothing is written "
            "to brands/offers.",
        ),
        "page_size": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=MAX_PAGE_SIZE,
            title="Page size",
            description="Records per API request (1-1000). Empty: the trackier_api connection's page_size.",
        ),
        "pagination": Param(
            "connection",
            type="string",
            enum=["connection", "auto", "page", "cursor"],
            title="Pagination style",
            description="How to page through the API. 'connection' uses the connection's setting; 'auto' uses "
            "numbered pages when the API reports totals, else cursors.",
        ),
        "max_error_rate": Param(
            MAX_ERROR_RATE,
            type="number",
            minimum=0,
            maximum=1,
            title="Max error rate",
            description="Circuit breaker: if rejected + unfetched records exceed this share of the sweep, "
            "the live tables are not touched and the run fails.",
        ),
        "deactivate_missing": Param(
            True,
            type="boolean",
            title="Deactivate missing offers",
            description="When the sweep is complete, mark offers (and brands) that are no longer in Trackier inactive.",
        ),
        "max_deactivate_rate": Param(
            DEFAULT_MAX_DEACTIVATE_RATE,
            type="number",
            minimum=0,
            maximum=1,
            title="Max share of offers deactivated",
            description="Guard against an empty or cut-short feed: if more than this share of the active offers "
            "(or of the active brands) would be deactivated at once, none are and the run says why. Raise it for "
            "one run to apply a real mass clean-up.",
        ),
        "pages_per_shard": Param(
            DEFAULT_PAGES_PER_SHARD,
            type="integer",
            minimum=1,
            maximum=MAX_PAGES_PER_SHARD,
            title="Pages per shard",
            description="Pages fetched by one mapped extract task (each task costs ~1 s of Airflow overhead).",
        ),
        "max_shards": Param(
            DEFAULT_MAX_SHARDS,
            type="integer",
            minimum=1,
            maximum=MAX_MAX_SHARDS,
            title="Max shards per entity",
            description="Upper bound on mapped extract tasks per entity.",
        ),
    },
)
def trackier_offer_sync() -> None:
    @task
    def start_sync() -> dict:
        """Create the tables if needed, open the run's sync_runs record and its staging tables."""
        from include.offer_sync import tasks

        ctx = get_current_context()
        return tasks.start_sync(_db(), run_id=ctx["run_id"], dag_id=DAG_ID, params=dict(ctx["params"]))

    @task(pool=API_POOL)
    def plan_advertisers(run: dict) -> list[dict]:
        """Probe the advertiser list and split it into shards (page ranges, or one cursor stream)."""
        from include.offer_sync import tasks

        return tasks.plan_entity(_api(get_current_context()["params"]), "advertisers")

    @task(pool=API_POOL)
    def plan_campaigns(run: dict) -> list[dict]:
        """Probe the campaign list and split it into shards (page ranges, or one cursor stream)."""
        from include.offer_sync import tasks

        return tasks.plan_entity(_api(get_current_context()["params"]), "campaigns")

    @task(map_index_template="{{ shard_label }}", pool=API_POOL, max_active_tis_per_dagrun=API_TASKS_PER_ENTITY)
    def extract_advertisers(shard: dict, run: dict) -> dict:
        """Fetch one shard of advertisers, validate each record and COPY it into staging."""
        return _extract_shard(shard, run)

    @task(map_index_template="{{ shard_label }}", pool=API_POOL, max_active_tis_per_dagrun=API_TASKS_PER_ENTITY)
    def extract_campaigns(shard: dict, run: dict) -> dict:
        """Fetch one shard of campaigns, validate each record and COPY it into staging."""
        return _extract_shard(shard, run)

    @task
    def check_sweep(run: dict, advertisers: list[dict], campaigns: list[dict]) -> dict:
        """Resolve duplicates and orphans, keep rejects, and trip the error-rate breaker if needed."""
        from include.offer_sync import tasks

        params = get_current_context()["params"]
        return tasks.check_sweep(_db(), run, _all(advertisers, campaigns), float(params["max_error_rate"]))

    @task
    def merge_catalogue(run: dict, sweep: dict) -> dict:
        """Merge brands and offers in one transaction, with the audit trail and exact counts."""
        from include.offer_sync import tasks

        params = get_current_context()["params"]
        return tasks.merge_catalogue(
            _db(),
            run,
            sweep,
            deactivate_missing=bool(params["deactivate_missing"]),
            dry_run=bool(params["dry_run"]),
            max_deactivate_rate=float(params.get("max_deactivate_rate", DEFAULT_MAX_DEACTIVATE_RATE)),
        )

    @task
    def publish_result(run: dict, advertisers: list[dict], campaigns: list[dict], sweep: dict, merged: dict) -> dict:
        """Close the run record, drop staging, run the alert checks and return `sync_result`."""
        from include.offer_sync import tasks
        from include.offer_sync.alerts.callbacks import announce_result

        ctx = get_current_context()
        result = tasks.publish_result(_db(), run, _all(advertisers, campaigns), sweep, merged)
        # Duration / error-rate / memory checks (in this task's log), dry runs included.
        announce_result(result, conf=ctx["dag_run"].conf, context=ctx, dag_id=DAG_ID)
        return result

    # Airflow records a task's outlet events when, and only when, the task succeeds; a skipped task
    # emits none. So the one event of a run is this task's success, claimed in sync_runs first.
    @task(
        outlets=[OFFERS_ASSET],
        on_failure_callback=[_on_task_failure, _release_event_claim],
        on_retry_callback=[_on_task_retry, _release_event_claim],
    )
    def emit_offers_event(result: dict) -> None:
        """Emit the `offers` event (extra = `sync_result`) and POST the webhook, once; skipped for a dry run."""
        from airflow.sdk.exceptions import AirflowSkipException

        from include.offer_sync import tasks
        from include.offer_sync.alerts.callbacks import post_sync_result

        ctx = get_current_context()
        claim = tasks.claim_event(_db(), result["run_id"], try_number=ctx["ti"].try_number)
        if claim["result"] is None:
            raise AirflowSkipException(claim["reason"])
        ctx["outlet_events"][OFFERS_ASSET].extra = claim["result"]
        post_sync_result(claim["result"])

    run = start_sync()
    advertisers = extract_advertisers.partial(run=run).expand(shard=plan_advertisers(run))
    campaigns = extract_campaigns.partial(run=run).expand(shard=plan_campaigns(run))
    sweep = check_sweep(run, advertisers, campaigns)
    merged = merge_catalogue(run, sweep)
    emit_offers_event(publish_result(run, advertisers, campaigns, sweep, merged))


def _db():
    """The offers database (the `offers_db` connection)."""
    from include.offer_sync.settings import DatabaseSettings

    return DatabaseSettings.from_airflow()


def _api(params: dict):
    """The Trackier API (the `trackier_api` connection), with this run's Param overrides."""
    from include.offer_sync.settings import TrackierSettings

    pagination = params.get("pagination")
    return TrackierSettings.from_airflow().with_overrides(
        page_size=params.get("page_size"),
        pagination=None if pagination in (None, "connection") else pagination,
        pages_per_shard=params.get("pages_per_shard"),
        max_shards=params.get("max_shards"),
    )


def _all(*mapped_outputs) -> list[dict]:
    """The summaries of mapped tasks, read by index (iterating would probe one past the end)."""
    return [seq[i] for seq in mapped_outputs for i in range(len(seq))]


def _extract_shard(shard: dict, run: dict) -> dict:
    from include.offer_sync import tasks

    ctx = get_current_context()
    ctx["shard_label"] = shard["label"]  # type: ignore[typeddict-unknown-key]  # map_index_template
    # The try goes on every staged row: a zombie try of this shard still running cannot double it.
    return tasks.extract_shard(_db(), _api(ctx["params"]), run, shard, try_number=ctx["ti"].try_number)


trackier_offer_sync()
