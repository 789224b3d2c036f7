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


class TrackierRedirectError(ConfigurationError):
    """Trackier redirected to another host: the key is not sent there, and the connection's host
    must be corrected (retrying would only ask for the same redirect)."""


class TrackierTransientError(SyncError):
    """A request failed in a way that may succeed later (timeout, reset, 429, 5xx, codes 40/50/51)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TrackierResponseError(SyncError):
    """The API answered, but not with something we can use (bad JSON, success:false, bad shape)."""


#: SQLSTATEs that mean the session is gone or was never there: connection exceptions (class 08),
#: admin_shutdown / crash_shutdown / cannot_connect_now (57P01-57P03, a terminated backend or a
#: restarting server), database_dropped (57P04) and too_many_connections (53300, a refused connection).
CONNECTION_SQLSTATE_CLASSES = ("08",)
CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P04", "53300"})


def is_connection_failure(sqlstate: str | None) -> bool:
    """Whether a server error code means a lost or refused connection (None: no code, the socket closed)."""
    return sqlstate is None or sqlstate[:2] in CONNECTION_SQLSTATE_CLASSES or sqlstate in CONNECTION_SQLSTATES


class DatabaseError(SyncError):
    """A statement of the sync failed in the offers database for a reason other than the data.

    The transaction it ran in was rolled back, so nothing of it was stored; all of these are
    transient (Airflow's task retry runs the task again). Subclasses say what happened, because the
    operator's next step differs: a lost connection is an outage, a deadlock needs nothing, a lock
    or statement timeout names the setting to raise, a full disk needs space. ``sqlstate`` is the
    server's five-character error code (None when the client lost the connection before one came).
    """

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseUnavailableError(DatabaseError):
    """The offers database refused or dropped the connection (SQLSTATE class 08, a server that shut
    down or terminated the session, too many clients, or no SQLSTATE at all: the socket closed).

    The only database error that raises the ``db_connection`` alert.
    """


class DatabaseConflictError(DatabaseError):
    """The server rolled the transaction back to resolve a conflict with another session: a
    deadlock (40P01) or a serialization failure (40001). Running it again normally succeeds."""


class DatabaseTimeoutError(DatabaseError):
    """A wait or a statement outlasted one of the session's timeouts: ``lock_timeout`` (55P03),
    ``statement_timeout`` (57014) or ``idle_in_transaction_session_timeout`` (25P03).

    ``setting`` names the PostgreSQL setting and ``variable`` the environment variable that sets it
    for the sync's sessions, so the message can say what to raise.
    """

    def __init__(
        self, message: str, sqlstate: str | None = None, *, setting: str = "", variable: str | None = None
    ) -> None:
        super().__init__(message, sqlstate)
        self.setting = setting
        self.variable = variable


class DatabaseCanceledError(DatabaseError):
    """A statement was cancelled from outside (``pg_cancel_backend``, an operator), not by a timeout."""


class DatabaseResourceError(DatabaseError):
    """The database server ran out of something: disk (53100), memory (53200), other resources
    (class 53) or hit a system I/O error (class 58)."""


class SweepRejectedError(FatalSyncError):
    """The error-rate circuit breaker tripped: the live tables were left untouched."""


class SweepSupersededError(FatalSyncError):
    """A sweep that started later has already merged: merging this older one would revert it."""


class CarriedOffersLostError(FatalSyncError):
    """Campaigns this run staged as unchanged (their fingerprint was a stored offer's) have no stored
    offer any more at merge time: ``offers`` was emptied or rows deleted while the run fetched. Their
    values were never staged, so the merge stops; a new run fetches and validates them again."""
