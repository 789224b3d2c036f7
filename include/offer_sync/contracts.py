"""What travels between the tasks (through XCom) and between the modules: one TypedDict per dict.

Every dict that crosses a task or module boundary is declared here, with the keys the code uses
today. They are plain dicts at run time (XCom serialises them as JSON), so typing them changes no
behaviour; what it buys is one place to read what ``plan_*`` hands ``extract_*``, what a shard
reports, what ``check_sweep`` decides and what ``publish_result`` returns.

The key lists other modules need are derived from these classes, never written again:
``COUNT_KEYS`` (the integer counts of a run), ``RECORD_KEYS`` (the ``sync_runs`` columns the merge
writes), ``RECORDED_SWEEP_KEYS`` (what a merged run remembers of its sweep) and ``RESULT_KEYS`` (the
``sync_result`` contract promised to operators: never renamed, only added to).

No ``from __future__ import annotations`` here: in Python 3.11 it hides ``NotRequired`` from
TypedDict, and every key would silently become required.
"""

from typing import Literal, NotRequired, TypedDict, get_type_hints

from include.offer_sync.trackier.pagination import Entity, PaginationVerdict

ENTITIES: tuple[Entity, ...] = ("advertisers", "campaigns")
Status = Literal["completed", "completed_with_errors", "failed"]
ShardStyle = Literal["page", "cursor"]


# --- measurements ---------------------------------------------------------------------------------


class TaskMetrics(TypedDict):
    """What every task measures about itself (``tasks._task_metrics``)."""

    wall_s: float
    peak_rss_mb: float
    db_statements: int


class ProbeStats(TypedDict):
    """What the probe of page 1 cost; carried on the first shard of each entity."""

    requests: int
    wall_s: float
    peak_rss_mb: float


class TaskTiming(TypedDict):
    task: str  # a task id, or a shard label for extract tasks
    wall_s: float
    peak_rss_mb: float


class PhaseTimes(TypedDict):
    extract: float  # time spent waiting for pages (fetch threads)
    validate: float
    stage: float
    check: float
    merge: float


class ShardCounts(TypedDict):
    advertisers: int
    campaigns: int


class RunMetrics(TypedDict):
    """``sync_result["metrics"]`` and ``sync_runs.metrics``: the whole run, per phase and per task."""

    phases_s: PhaseTimes
    merge_path: Literal["first_sync", "general"] | None  # None: a merge task re-run after its commit
    tasks: list[TaskTiming]
    peak_task_rss_mb: float
    api_requests: int
    api_retries: int
    pages_fetched: int
    pages_failed: int
    records_fetched: int
    records_valid: int
    records_rejected: int
    db_statements: int
    shards: ShardCounts
    #: Extract tasks that parsed and staged their pages in validation workers (``extract_pool.py``;
    #: with ``validate_processes: auto`` that depends on the load each one found as it started).
    shards_with_workers: int


class MergeTimings(TypedDict):
    lock_wait_s: float
    brands_s: float
    offers_s: float
    deactivate_s: float


# --- start_sync -> every later task ---------------------------------------------------------------


class RunHandle(TypedDict):
    """``start_sync``'s return value: which run this is, and its staging tables' key."""

    run_id: str
    run_key: str  # StagingTables.for_run(run_id).run_key
    metrics: TaskMetrics


# --- plan_* -> extract_* --------------------------------------------------------------------------


class Shard(TypedDict):
    """One mapped extract task's piece of a sweep (``trackier.shards.plan_shards``)."""

    entity: Entity
    index: int
    style: ShardStyle
    first: int | None  # first page (None: a cursor stream)
    last: int | None  # last page, None = read on until a short page
    label: str  # shown as the mapped task's name: "campaigns: pages 51-100 of 980"
    limit: int  # page size the probe settled on
    expected_total: int | None  # records the API promised on page 1
    pagination: PaginationVerdict  # how the entity is paginated, and why
    first_page: str | None  # fingerprint of page 1: a shard that is served page 1 again notices
    planned_last: NotRequired[int]  # page ranges with a total: the last page the total promises
    requests_per_second: NotRequired[float]  # the sweep's rate (shared by its extract tasks, ratelimit.py)
    probe: NotRequired[ProbeStats]  # on the first shard only


# --- extract_* -> check_sweep, publish_result, the Offer Sync page --------------------------------


class ShardSummary(TypedDict):
    """What one extract task reports: counts and timings, never records.

    Built by ``extract.ShardSummary.as_dict`` (the mutable tally of one shard has the same name)."""

    entity: Entity
    shard: int
    label: str
    pages: int
    records: int
    valid: int
    carried: int  # of the valid: a stored offer's fingerprint, staged without validation
    rejected: int
    failed_pages: int
    failed_records_estimate: int  # failed pages x page size: counted against the error rate
    anomalies: int
    requests: int
    retries: int
    retry_wait_s: float
    fetch_wait_s: float
    validate_s: float
    stage_s: float
    wall_s: float
    peak_rss_mb: float
    processes: int  # validation workers used (0: none, the task process validated every page)
    worker_wait_s: float
    worker_peak_rss_mb: float  # the workers' largest VmHWM, shared copy-on-write pages included
    last_page: int | None
    expected_total: int | None
    probe_requests: int
    errors: list[str]  # a sample (5); all are in sync_page_errors
    complete: bool
    ended_on_full_page: bool  # the stream stopped on a full page: the end is not proven
    pagination: PaginationVerdict
    db_statements: int  # added by tasks.extract_shard


# --- the counts of a run --------------------------------------------------------------------------


class RunColumns(TypedDict):
    """The integer counts of a run that ``sync_runs`` keeps in columns of their own."""

    added: int
    updated: int
    unchanged: int
    deactivated: int
    reactivated: int
    rejected: int
    duplicates: int
    campaigns_processed: int
    advertisers_processed: int
    brands_added: int
    brands_updated: int


class RunCounts(RunColumns):
    """The integer counts of a run, in the order ``sync_result`` lists them."""

    brands_deactivated: int
    brands_reactivated: int


class MergeFlags(TypedDict):
    """The merge's verdicts, carried to the final result (and kept by a retried merge)."""

    deactivation_skipped: bool  # asked to deactivate, but no offer was (incomplete sweep, or the guard)
    deactivation_blocked: bool  # the guard stopped a mass deactivation (offers or brands)
    brands_deactivation_blocked: bool


class SweepVerdict(TypedDict):
    """What the whole-sweep check decided; travels on to the merge and into ``sync_result``."""

    complete_sweep: bool
    failed_pages: int
    error_rate: float
    problems: list[str]


class RecordedSweep(SweepVerdict):
    """What a merged run remembers of its sweep (``runs.recorded_sweep``), and what every sweep has."""

    advertisers_processed: int
    campaigns_processed: int
    rejected: int
    duplicates: int
    already_merged: NotRequired[bool]  # True when read back from a run that already merged
    metrics: NotRequired[TaskMetrics]  # added by tasks.check_sweep


class Sweep(RecordedSweep):
    """``check_sweep``'s return value (``load.sweep.check_sweep``). A run that already merged returns
    its ``RecordedSweep`` instead: the keys below are then absent."""

    advertisers_valid: NotRequired[int]
    campaigns_valid: NotRequired[int]
    campaigns_carried: NotRequired[int]  # of the valid: staged without validation (``trackier/fingerprint.py``)
    failed_records_estimate: NotRequired[int]
    anomalies: NotRequired[int]
    pagination: NotRequired[dict[str, PaginationVerdict]]  # per entity (``sweep.pagination_verdicts``)


# --- merge_catalogue -> publish_result ------------------------------------------------------------


class MergeCounts(RunCounts, SweepVerdict, MergeFlags):
    """``merge_catalogue``'s return value (``load.merge.merge_sweep``). A merge task cleared and run
    again after its commit returns ``AlreadyMerged`` instead."""

    merge_timings: MergeTimings
    merge_path: Literal["first_sync", "general"]  # the insert-only path into an empty offers table, or the merge
    metrics: NotRequired[TaskMetrics]  # added by tasks.merge_catalogue


class AlreadyMerged(TypedDict, total=False):
    """What ``merge_sweep`` returns when its run merged before (the task cleared and run again): the
    ``SyncResult`` the merge stored, plus ``already_merged``; ``merge_timings`` is absent."""

    already_merged: bool
    metrics: TaskMetrics


#: merge_catalogue's return value: a fresh merge, or the recorded one
MergeResult = MergeCounts | AlreadyMerged


# --- publish_result -> operators, the Asset event, sync_runs.result, webhooks ---------------------


class SyncResultContract(TypedDict):
    """The keys promised to operators since the first release (README "The result contract")."""

    status: Status
    added: int
    updated: int
    unchanged: int
    deactivated: int
    rejected: int
    campaigns_processed: int
    advertisers_processed: int
    brands_added: int
    brands_updated: int
    error_rate: float
    duration_s: float
    run_id: str


class SyncResult(SyncResultContract):
    """``publish_result``'s return value, the ``offers`` event's ``extra`` and ``sync_runs.result``."""

    reactivated: int
    duplicates: int
    brands_deactivated: int
    brands_reactivated: int
    deactivation_skipped: NotRequired[bool]
    deactivation_blocked: NotRequired[bool]
    brands_deactivation_blocked: NotRequired[bool]
    pagination: NotRequired[dict[str, PaginationVerdict]]
    dry_run: NotRequired[bool]
    complete_sweep: NotRequired[bool]
    failed_pages: NotRequired[int]
    problems: NotRequired[list[str]]
    metrics: NotRequired[RunMetrics]
    error: NotRequired[str]  # failed runs only


# --- derived key lists (one home; see the module docstring) ---------------------------------------

#: sync_result's integer counts, in order (runs.build_result)
COUNT_KEYS: tuple[str, ...] = tuple(RunCounts.__annotations__)
#: the sync_runs columns the merge writes
RECORD_KEYS: tuple[str, ...] = (*RunColumns.__annotations__, "error_rate")
#: the merge's verdicts (runs.MERGE_FLAGS)
MERGE_FLAGS: tuple[str, ...] = tuple(MergeFlags.__annotations__)
#: what runs.recorded_sweep reads back as integers
RECORDED_SWEEP_COUNTS: tuple[str, ...] = tuple(
    k for k, t in get_type_hints(RecordedSweep).items() if t is int and k in RecordedSweep.__required_keys__
)
#: the sweep's figures that merge_sweep copies into its counts (problems are merged separately)
SWEEP_KEYS_IN_COUNTS: tuple[str, ...] = tuple(
    k for k in RecordedSweep.__annotations__ if k in RecordedSweep.__required_keys__ and k != "problems"
)
#: the operators' contract (README "The result contract"), checked by tests/airflow/test_spec_cases.py
RESULT_KEYS: tuple[str, ...] = tuple(SyncResultContract.__annotations__)
