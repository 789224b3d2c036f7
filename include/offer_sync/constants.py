"""Every name and default that more than one file needs, defined once.

Standard library only and no I/O: the DAG file imports it while it is parsed. Environment variables
are read where they apply (the DAG file, ``alerts.rules.Thresholds.from_env``, ``db``); their names
and defaults live here, so a default cannot drift between the Trigger form, the alert rules, the
in-process runner and the functions that do the work.
"""

from __future__ import annotations

from datetime import timedelta

# --- the DAG and its tasks ----------------------------------------------------------------------
DAG_ID = "trackier_offer_sync"
#: The Asset the DAG updates after a real (not dry) run; ``offers_consumer_example`` is scheduled on it.
OFFERS_ASSET_NAME = "offers"
OFFERS_ASSET_URI = "trackier-offer-sync://offers"
DAGRUN_TIMEOUT = timedelta(hours=2)
#: The mapped tasks per entity (the page reads their progress by these ids).
PLAN_TASKS = {"plan_advertisers": "advertisers", "plan_campaigns": "campaigns"}
EXTRACT_TASKS = {"extract_advertisers": "advertisers", "extract_campaigns": "campaigns"}

# --- connections and the pool -------------------------------------------------------------------
TRACKIER_CONN_ID = "trackier_api"
OFFERS_DB_CONN_ID = "offers_db"
WEBHOOK_CONN_ID = "offer_sync_webhook"
#: The Airflow pool that caps concurrent API tasks (compose sets ``trackier_api``).
API_POOL_ENV, DEFAULT_API_POOL = "OFFER_SYNC_API_POOL", "default_pool"
#: Extract tasks of one entity that may run at once in one DAG run (``max_active_tis_per_dagrun``);
#: the request rate is one budget for the whole sweep whatever this is (``trackier/ratelimit.py``).
API_TASKS_PER_ENTITY = 4

# --- Params (the Trigger form) and the API connection's extras -----------------------------------
MAX_ERROR_RATE_ENV, DEFAULT_MAX_ERROR_RATE = "OFFER_SYNC_MAX_ERROR_RATE", 0.05
DEFAULT_MAX_DEACTIVATE_RATE = 0.2
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 1000, 1000
DEFAULT_PAGES_PER_SHARD, MAX_PAGES_PER_SHARD = 50, 10_000
#: Pages one stream (a shard's range or cursor) may read, and records one page may hold: a staging
#: row's ``seq`` is shard, page and position in fixed decimal fields (``load/staging.py``), so that a
#: validation worker can number a page's rows before the task process knows how many came before.
#: A page with more records than this (we ask for at most MAX_PAGE_SIZE) is refused as malformed.
DEFAULT_MAX_PAGES, MAX_MAX_PAGES = 100_000, 999_999
MAX_RECORDS_PER_PAGE = 999_999
#: No more shards by default than the extract tasks of an entity that may run at once: a shard past
#: that adds a task instance (0.6-0.9 s of Airflow under ``airflow dags test``, a process that starts
#: and imports Airflow under a scheduler) and no parallelism. 1M campaigns, 4 shards instead of 8:
#: Airflow's part of the extract tasks 6.0-7.2 -> 3.5-4.2 s per sync under ``dags test``,
#: LocalExecutor 119.9 / 54.5 / 71.3 -> 112.7 / 47.5 / 71.8 s, 8 statements fewer (BENCHMARKS.md,
#: "Issue 14, ninth round").
DEFAULT_MAX_SHARDS, MAX_MAX_SHARDS = API_TASKS_PER_ENTITY, 64
#: Pages one extract task fetches at once (numbered pages only; a cursor stream is sequential).
DEFAULT_FETCH_THREADS = 2
#: Processes that parse and stage one extract task's pages (``extract_pool.py``), capped by the usable
#: cores; fewer than 2 (or a shard under POOL_MIN_RECORDS) and the task process stages every page itself.
#: ``auto`` (the default): as many as the usable cores (at most MAX_AUTO_VALIDATE_PROCESSES), and only
#: when the rest of the machine leaves them idle as the shard starts (``extract_pool.busy_elsewhere``).
#: They pay where one task has the cores to itself (``airflow dags test`` at 1M, the same machine
#: minutes apart: first sync 88.0 -> 73.3 s, no-change resync 50.1 -> 33.9 s, 10 % changed 60.7 -> 46.9 s)
#: and cost where mapped tasks already fill them (LocalExecutor at 1M on 2 cores: 70.3 -> 70.3,
#: 28.1 -> 35.1, 43.6 -> 51.4 s). BENCHMARKS.md, "Issue 14, eleventh round".
AUTO = "auto"
DEFAULT_VALIDATE_PROCESSES, MAX_VALIDATE_PROCESSES, MAX_AUTO_VALIDATE_PROCESSES = AUTO, 16, 4
POOL_MIN_RECORDS = 20_000

# --- retries ------------------------------------------------------------------------------------
TASK_RETRIES_ENV, DEFAULT_TASK_RETRIES = "OFFER_SYNC_TASK_RETRIES", 3
RETRY_DELAY_ENV, DEFAULT_RETRY_DELAY_S = "OFFER_SYNC_RETRY_DELAY_S", 30.0
MAX_RETRY_DELAY = timedelta(minutes=5)

# --- alert thresholds (alerts.rules.Thresholds) -------------------------------------------------
DEFAULT_MAX_DURATION_S = 600.0
DEFAULT_MAX_TASK_RSS_MB = 1024.0
DEADLINE_MINUTES_ENV, DEFAULT_DEADLINE_MINUTES = "OFFER_SYNC_DEADLINE_MINUTES", 10.0
THRESHOLD_ENV = {
    "max_duration_s": "OFFER_SYNC_MAX_DURATION_S",
    "max_error_rate": MAX_ERROR_RATE_ENV,
    "max_task_rss_mb": "OFFER_SYNC_MAX_TASK_RSS_MB",
    "deadline_minutes": DEADLINE_MINUTES_ENV,
}
EXTRA_NOTIFIERS_ENV = "OFFER_SYNC_EXTRA_NOTIFIERS"
