"""The alert rules: thresholds, and which rules a ``sync_result`` breaks.

**Rules** (defaults from the original test specification's targets, ``docs/trackier-api.md``;
each threshold is an environment variable on the components that
run tasks, callbacks and triggers, and can be overridden for one run with the run's conf key
``alert_thresholds``, e.g. ``{"alert_thresholds": {"max_duration_s": 1200}}``):

==================  ===========================================  =================================
rule                fires when                                    threshold (env var, default)
==================  ===========================================  =================================
``duration``        the run took longer than the limit            ``OFFER_SYNC_MAX_DURATION_S`` 600
``error_rate``      rejected + unfetched records / sweep > limit  ``OFFER_SYNC_MAX_ERROR_RATE`` 0.05
``task_memory``     the peak RSS of any sync task > limit (MB)    ``OFFER_SYNC_MAX_TASK_RSS_MB`` 1024
``db_connection``   a database connection was lost or refused      any failure
                    (any task try; not deadlocks, timeouts, disk)
``run_failed``      the run failed outright                       any failure
``deadline``        the run is not finished N minutes after it    ``OFFER_SYNC_DEADLINE_MINUTES`` 10
                    was queued (Airflow deadline alert)
==================  ===========================================  =================================
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from include.offer_sync.constants import (
    DAG_ID,
    DEFAULT_DEADLINE_MINUTES,
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MAX_ERROR_RATE,
    DEFAULT_MAX_TASK_RSS_MB,
    THRESHOLD_ENV,
)

log = logging.getLogger(__name__)


#: The run conf key holding per-run threshold overrides.
CONF_KEY = "alert_thresholds"

DURATION = "duration"
ERROR_RATE = "error_rate"
TASK_MEMORY = "task_memory"
DB_CONNECTION = "db_connection"
RUN_FAILED = "run_failed"
DEADLINE = "deadline"
RULES: tuple[str, ...] = (DURATION, ERROR_RATE, TASK_MEMORY, DB_CONNECTION, RUN_FAILED, DEADLINE)


def _number(raw: Any, source: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        from include.offer_sync.errors import ConfigurationError

        raise ConfigurationError(f"{source} must be a number >= 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class Thresholds:
    """The limits the rules compare against (``measured > threshold`` fires)."""

    max_duration_s: float = DEFAULT_MAX_DURATION_S
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_task_rss_mb: float = DEFAULT_MAX_TASK_RSS_MB
    deadline_minutes: float = DEFAULT_DEADLINE_MINUTES

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Thresholds:
        """Defaults, then the ``OFFER_SYNC_*`` variables, then this run's ``alert_thresholds``."""
        environ = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for name, var in THRESHOLD_ENV.items():
            raw = environ.get(var)
            if raw is not None and str(raw).strip() != "":
                values[name] = _number(raw, var)
        for name, raw in (overrides or {}).items():
            if name not in THRESHOLD_ENV:
                log.warning("ignoring unknown alert threshold %r in the run's %s", name, CONF_KEY)
                continue
            values[name] = _number(raw, f"{CONF_KEY}.{name}")
        return cls(**values)


@dataclass(frozen=True)
class Alert:
    """One fired rule: what was measured against which threshold, for which run, and where to look."""

    rule: str
    measured: float | None
    threshold: float | None
    run_id: str | None
    link: str | None
    message: str
    severity: str = "warning"  # warning | critical
    dag_id: str = DAG_ID
    raised_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def row(self) -> dict[str, Any]:
        """The parameters of ``sql/alerts_insert.sql``: one ``sync_alerts`` row."""
        return {k: getattr(self, k) for k in ("run_id", "rule", "severity", "measured", "threshold", "message", "link")}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_alert(alert: Alert) -> str:
    """The single human-readable form of an alert (log lines, chat messages, e-mail subjects)."""
    figures = ""
    if alert.measured is not None and alert.threshold is not None:
        figures = f" (measured {fmt_number(alert.measured)}, threshold {fmt_number(alert.threshold)})"
    where = f" | run {alert.run_id}" if alert.run_id else ""
    link = f" | {alert.link}" if alert.link else ""
    return f"[{alert.severity.upper()}] {alert.dag_id} {alert.rule}: {alert.message}{figures}{where}{link}"


def fmt_number(value: float) -> str:
    """A measured figure or threshold as alert texts print it (six significant digits)."""
    return f"{value:.6g}"


def run_link(run_id: str | None, dag_id: str = DAG_ID) -> str | None:
    """The run's page in the Airflow UI (``[api] base_url``; run ids hold ``:`` and ``+``)."""
    if not run_id:
        return None
    base = "http://localhost:8080"
    try:
        from airflow.sdk.configuration import conf

        base = conf.get("api", "base_url", fallback=None) or base
    except Exception:  # noqa: BLE001 - a link is a nicety; no config must not stop an alert
        log.debug("no [api] base_url; using %s in alert links", base)
    return f"{base.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def evaluate(
    result: Mapping[str, Any], thresholds: Thresholds, *, link: str | None = None, dag_id: str = DAG_ID
) -> list[Alert]:
    """The rules a ``sync_result`` breaks: duration, error rate, task memory, and a failed status.

    Values that were not measured (a run that failed before the merge has no task metrics) never
    fire: an alert always carries a real measurement.
    """
    run_id = result.get("run_id")
    alerts: list[Alert] = []

    def add(rule: str, measured: float | None, threshold: float | None, message: str, severity: str) -> None:
        alerts.append(Alert(rule, measured, threshold, run_id, link, message, severity, dag_id))

    duration = _float(result.get("duration_s"))
    if duration is not None and duration > thresholds.max_duration_s:
        limit = thresholds.max_duration_s
        add(DURATION, duration, limit, f"the sync took {duration:.1f} s, longer than the {limit:g} s limit", "warning")

    error_rate = _float(result.get("error_rate"))
    if error_rate is not None and error_rate > thresholds.max_error_rate:
        add(
            ERROR_RATE,
            error_rate,
            thresholds.max_error_rate,
            f"{error_rate:.2%} of the sweep was rejected or not fetched (rejected {result.get('rejected', 0)}, "
            f"failed pages {result.get('failed_pages', 0)}), over the {thresholds.max_error_rate:.2%} limit",
            "critical" if result.get("status") == "failed" else "warning",
        )

    metrics = result.get("metrics") or {}
    peak = _float(metrics.get("peak_task_rss_mb"))
    if peak is not None and peak > thresholds.max_task_rss_mb:
        tasks = metrics.get("tasks") or []
        over = [t for t in tasks if (_float(t.get("peak_rss_mb")) or 0) > thresholds.max_task_rss_mb]
        names = ", ".join(f"{t.get('task')} {float(t['peak_rss_mb']):.0f} MB" for t in over[:5]) or "?"
        add(
            TASK_MEMORY,
            peak,
            thresholds.max_task_rss_mb,
            f"a sync task peaked at {peak:.0f} MB RSS, over the {thresholds.max_task_rss_mb:g} MB limit ({names})",
            "warning",
        )

    if result.get("status") == "failed":
        error = str(result.get("error") or "see the task logs")[:500]
        add(RUN_FAILED, 1.0, 0.0, f"the sync run failed: {error}", "critical")  # 1 failed run, any is too many
    return alerts


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def find_db_connection_error(exc: BaseException | None) -> BaseException | None:
    """The lost or refused database connection in ``exc``'s chain, if any: a ``DatabaseUnavailableError``,
    or a psycopg ``OperationalError`` whose SQLSTATE says the connection is gone (``is_connection_failure``).

    Only those: psycopg also files deadlocks, lock and statement timeouts and a full disk under
    ``OperationalError``, and ``db.connect`` turns them into the other ``DatabaseError`` classes,
    which are reported as what they are (in the task log and, when the run fails, ``run_failed``).
    Classes are matched by module and name along the MRO, so psycopg is not imported just to ask.
    """
    from include.offer_sync.errors import is_connection_failure

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for cls in type(exc).__mro__:
            if cls.__module__ == "include.offer_sync.errors" and cls.__name__ == "DatabaseError":
                return None  # classified by db.connect: a more specific class than "unavailable"
            if (cls.__name__ == "DatabaseUnavailableError" and cls.__module__ == "include.offer_sync.errors") or (
                cls.__name__ == "OperationalError"
                and cls.__module__.split(".")[0] == "psycopg"
                and is_connection_failure(getattr(exc, "sqlstate", None))
            ):
                return exc
        exc = exc.__cause__ or exc.__context__
    return None


def db_connection_alert(
    error: BaseException | str,
    *,
    run_id: str | None,
    where: str,
    severity: str = "critical",
    link: str | None = None,
    dag_id: str = DAG_ID,
) -> Alert:
    """``db_connection``: measured = 1 failed connection, threshold = 0 (any failure alerts)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return Alert(
        DB_CONNECTION, 1.0, 0.0, run_id, link, f"{where}: database connection failed: {text[:500]}", severity, dag_id
    )


def thresholds_for(conf: Mapping[str, Any] | None) -> Thresholds:
    """The thresholds of a run: env vars, overridden by the run conf's ``alert_thresholds``."""
    overrides = (conf or {}).get(CONF_KEY)
    return Thresholds.from_env(overrides=overrides if isinstance(overrides, Mapping) else None)
