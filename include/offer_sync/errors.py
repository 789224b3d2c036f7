"""Exceptions the sync raises, sorted by what an operator (and Airflow's retry policy) should do.

The split matters more than the names: a bad key or a non-whitelisted IP never gets better by
retrying, so those are ``FatalSyncError`` and stop Airflow's retries too; everything else is
transient and worth another attempt.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base class of every error raised by the offer sync."""


class FatalSyncError(SyncError):
    """An error that retrying cannot fix (credentials, permissions, configuration)."""


class TrackierAuthError(FatalSyncError):
    """Trackier refused the API key or the caller (HTTP 400/401/403 with codes 5/12/13/41/42/102)."""


class ConfigurationError(FatalSyncError):
    """A connection or parameter is missing or malformed."""


class TrackierTransientError(SyncError):
    """A request failed in a way that may succeed later (timeout, reset, 429, 5xx, codes 40/50/51)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TrackierResponseError(SyncError):
    """The API answered, but not with something we can use (bad JSON, success:false, bad shape)."""


class PaginationError(SyncError):
    """The pages do not add up: a cursor repeats, the page cap is hit, totals do not match."""


class DatabaseUnavailableError(SyncError):
    """The offers database refused or dropped the connection."""


class SweepRejectedError(FatalSyncError):
    """The error-rate circuit breaker tripped: the live tables were left untouched."""


class SweepSupersededError(FatalSyncError):
    """A sweep that started later has already merged: merging this older one would revert it."""
