"""Row-level helpers shared by the lifecycle operations (refresh, health, revoke)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections, router, transaction
from django.utils import timezone

from ..exceptions import (
    CredentialsUnreadableError,
    DatadogPartnerError,
    NeedsReconnectError,
    RateLimitedError,
    RetryableError,
)
from ..models import Connection, ConnectionStatus

#: Fields a lifecycle operation may change; copied back onto the caller's instance.
STATE_FIELDS = (
    "access_token",
    "refresh_token",
    "expires_at",
    "refresh_answer_lost_at",
    "scopes",
    "api_key",
    "api_key_fingerprint",
    "status",
    "status_reason",
    "status_changed_at",
    "last_success_at",
    "last_error_at",
    "last_error_code",
    "health_checked_at",
    "updated_at",
)


@contextmanager
def locked_row(connection: Connection) -> Iterator[Connection]:
    """A fresh copy of the connection's row, locked until the block ends.

    Where the database has row locks (PostgreSQL…) this is ``SELECT … FOR UPDATE`` inside a
    transaction, so concurrent refreshes and revocations of one connection run one at a
    time. SQLite has no row locks, and a transaction held open across an HTTP call would
    block every other writer of the file, so there the row is read without one; callers
    re-read the row before deciding anything that a concurrent writer could have changed.
    The block must not raise for an outcome it wants committed: raise after it ends.
    """
    alias = router.db_for_write(Connection)
    queryset = Connection.objects.using(alias)
    if connections[alias].features.has_select_for_update:
        with transaction.atomic(using=alias):
            yield queryset.select_for_update().get(pk=connection.pk)
    else:
        yield queryset.get(pk=connection.pk)


#: The first key of the advisory locks that make token refreshes single-flight.
REFRESH_LOCK_SPACE = 0x0DD9


@contextmanager
def single_flight(connection: Connection) -> Iterator[None]:
    """One refresh of ``connection`` at a time, without a transaction held open.

    On PostgreSQL a session advisory lock keyed by the connection's id: it is held across
    the token request, but it is no row lock and no transaction (nothing that writes the
    row waits for Datadog, and no snapshot stays open); only another refresh of the same
    connection waits for it, and it ends with the session if the process dies. Elsewhere
    nothing: callers re-read the row before acting on it (see ``locked_row``).
    """
    alias = router.db_for_write(Connection)
    db = connections[alias]
    if db.vendor != "postgresql":
        yield
        return
    key = [REFRESH_LOCK_SPACE, connection.pk % 2**31]
    if db.in_atomic_block:  # the caller's transaction is open anyway: ends with it
        with db.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", key)
        yield
        return
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", key)
    try:
        yield
    finally:
        with db.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


def reread(connection: Connection) -> Connection:
    """The row as committed now (bypassing any instance the caller holds)."""
    return Connection.objects.using(router.db_for_write(Connection)).get(pk=connection.pk)


def copy_state(source: Connection, target: Connection) -> None:
    """Make the caller's instance reflect what an operation stored."""
    if source is target:
        return
    for name in STATE_FIELDS:
        setattr(target, name, getattr(source, name))


def error_code_of(exc: Exception) -> str:
    """A short code for ``last_error_code``: Datadog's code, else the HTTP status, else a kind."""
    if isinstance(exc, DatadogPartnerError) and exc.error_code:
        return exc.error_code
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if isinstance(exc, DatadogPartnerError) and exc.status_code:
        return f"http_{exc.status_code}"
    if isinstance(exc, RetryableError):
        return "unreachable"
    return type(exc).__name__


def record_error(connection: Connection, code: str) -> None:
    """Note a failure on the connection without changing its status."""
    now = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(
        last_error_at=now, last_error_code=code[:100], updated_at=now
    )
    connection.last_error_at, connection.last_error_code, connection.updated_at = (
        now,
        code[:100],
        now,
    )


def unusable_error(connection: Connection) -> DatadogPartnerError:
    """Why a connection in a non-token status cannot call Datadog (no request is made)."""
    if connection.status == ConnectionStatus.CREDENTIALS_UNREADABLE:
        return CredentialsUnreadableError(
            f"Datadog connection {connection.pk}: its stored secrets cannot be decrypted with "
            "the configured ENCRYPTION_KEYS."
        )
    return NeedsReconnectError(
        f"Datadog connection {connection.pk} is {connection.get_status_display()}: "
        "it must be reconnected before it can call Datadog."
    )
