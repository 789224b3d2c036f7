"""When the sync runs on its own: ``OFFER_SYNC_SCHEDULE``, read when the DAG file is parsed.

A deployment chooses the time of its nightly sync without editing the DAG file: a five-field cron
expression (``30 2 * * *``: 02:30 UTC every day), one of Airflow's presets (``@daily`` is the
default: midnight UTC), or ``none`` for manual and REST-triggered runs only. Times are UTC: the
DAG's ``start_date`` is in UTC and so is the timetable.

The value is checked here, at parse time, so a typo becomes an import error on the DAG that names
the variable and says what is accepted, instead of a DAG that silently never runs (or one that
Airflow rejects later with a message about timetables). The check is cheap: a string split and,
for cron expressions, ``croniter`` (which Airflow itself uses for cron timetables).
"""

from __future__ import annotations

import os

from include.offer_sync.errors import ConfigurationError

ENV_VAR = "OFFER_SYNC_SCHEDULE"
DEFAULT_SCHEDULE = "@daily"
#: Airflow's cron presets (``airflow.utils.dates.cron_presets``; tests keep the two in step).
PRESETS = frozenset({"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"})
#: Values meaning "no schedule": runs only when triggered.
MANUAL = frozenset({"none", "manual"})


def parse_schedule(value: str | None) -> str | None:
    """The DAG's ``schedule`` for a setting: a preset, a normalised cron expression, or ``None``."""
    raw = (value or "").strip()
    if not raw:
        return DEFAULT_SCHEDULE
    if raw.lower() in MANUAL:
        return None
    if raw.startswith("@"):
        if raw in PRESETS:
            return raw
        raise ConfigurationError(
            f"{ENV_VAR}={raw!r} is not a schedule preset. Use one of {', '.join(sorted(PRESETS))}, "
            "a five-field cron expression such as '30 2 * * *' (UTC), or 'none' for triggered runs only."
        )
    fields = raw.split()
    if len(fields) != 5:
        raise ConfigurationError(
            f"{ENV_VAR}={raw!r} has {len(fields)} field(s); a cron expression has five: minute hour "
            "day-of-month month day-of-week, e.g. '30 2 * * *' for 02:30 UTC every day."
        )
    from croniter import croniter

    expression = " ".join(fields)
    if not croniter.is_valid(expression):
        raise ConfigurationError(
            f"{ENV_VAR}={raw!r} is not a valid cron expression (minute 0-59, hour 0-23, day 1-31, "
            "month 1-12, day of week 0-6), e.g. '30 2 * * *' for 02:30 UTC every day."
        )
    return expression


def schedule_from_env() -> str | None:
    """``parse_schedule`` of ``OFFER_SYNC_SCHEDULE`` (unset or empty: ``@daily``)."""
    return parse_schedule(os.environ.get(ENV_VAR))
