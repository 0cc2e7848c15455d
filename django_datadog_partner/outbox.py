"""The outbox table's row operations: the one INSERT on the host's save path, and every
other write or count over outbox rows (leases, requeue, cancel, purge, the backlog). Longer
than 300 lines because every statement over outbox rows lives here, next to the indexes'
reasons, and the save path's INSERT needs its own statement cache.

Writing on the save path (``append``): one INSERT in one round trip, nothing else. The
floor for durable capture is one extra INSERT in the caller's transaction; ``Model.save()``
and the INSERT compiler add more than that again in Python, so this module issues a
prebuilt INSERT (constants as literals, values adapted by the backend's own adapters) on
the driver's cursor. A database error is logged and never reaches the host: SQLite rolls
back only the failed statement; in autocommit there is no transaction to protect; in a
PostgreSQL transaction the INSERT is sent as ``SAVEPOINT; INSERT; RELEASE`` in one message
(a failed statement would poison the host's transaction), and only a failure costs a second
round trip (``ROLLBACK TO SAVEPOINT``). See docs/explanation/delivery.rst, "The save path".
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections, router, transaction
from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from .models import Connection, OutboxEvent, OutboxStatus

logger = logging.getLogger("django_datadog_partner.tracking")

#: Column -> the named parameter that fills it; the constant columns of a new row (pending,
#: not prepared, no attempt, no lease, no error) are SQL literals, not parameters: fewer
#: values to adapt and bind on the save path.
VALUES = {
    "kind": "kind", "owner_content_type": "owner_content_type_id",
    "owner_object_id": "owner_object_id", "connection": "connection_id", "payload": "payload",
    "source": "source", "action": "action", "event_time": "happened", "created_at": "now",
    "next_attempt_at": "now",
}  # fmt: skip
CONSTANTS = {"status": f"'{OutboxStatus.PENDING.value}'", "prepared": "FALSE", "attempts": "0",
             "lease_token": "''", "last_error_code": "''", "last_error": "''"}  # fmt: skip


@dataclass(frozen=True)
class Insert:
    """The outbox INSERT of one database alias, built once (``_statement``)."""

    sql: str  # Django's placeholders, RETURNING the id where that is free
    plain: str  # Django's placeholders, no RETURNING: the save path's statement
    raw: str  # the same in the driver's placeholders, for its own cursor
    guarded: str | None  # PostgreSQL: SAVEPOINT; INSERT; RELEASE in one message
    payload_field: Any
    time_field: Any


SAVEPOINT = "datadog_partner_outbox"


@functools.lru_cache(maxsize=8)
def _statement(using: str) -> Insert:
    """The INSERT for ``using``; only the JSON and time values need adapting, the other
    parameters are plain ``str``/``int``/``None`` values as they are."""
    connection = connections[using]
    quote = connection.ops.quote_name
    meta = OutboxEvent._meta
    names = [*VALUES, *CONSTANTS]
    columns = ", ".join(quote(getattr(meta.get_field(name), "column", name)) for name in names)

    def insert(mark: str) -> str:
        values = [mark.format(VALUES[name]) for name in VALUES]
        # Table and column names come from the model, quoted; every value is a parameter
        # or one of the constants above.
        return (
            f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
            f"VALUES ({', '.join([*values, *CONSTANTS.values()])})"
        )

    sql = insert("%({})s")
    raw = insert(":{}") if connection.vendor == "sqlite" else sql
    guarded = None
    if connection.vendor == "postgresql" and _one_message(connection):
        guarded = f"SAVEPOINT {SAVEPOINT}; {sql}; RELEASE SAVEPOINT {SAVEPOINT}"
    returning = f"{sql} RETURNING {quote('id')}" if _returning(connection) else sql
    payload_field, time_field = meta.get_field("payload"), meta.get_field("created_at")
    return Insert(returning, sql, raw, guarded, payload_field, time_field)


def _returning(db: Any) -> bool:
    """SQLite hands over the new id as ``lastrowid`` for free; RETURNING would cost a
    result row (measured: 0.09x of a save)."""
    return bool(db.features.can_return_columns_from_insert) and db.vendor != "sqlite"


def _one_message(db: Any) -> bool:
    """Whether the driver sends parameters bound on the client, so several statements can
    travel in one message: psycopg 2, and psycopg 3 unless ``server_side_binding``."""
    return db.settings_dict.get("OPTIONS", {}).get("server_side_binding") is not True


def _params(insert: Insert, db: Any, fields: dict[str, Any], payload: Any) -> dict[str, Any]:
    """The named parameters of ``Insert``: ``fields`` with the adapted ``payload``, and the
    times adapted as their fields would (``now`` is aware: the backend's adapter takes it
    directly; a caller's ``event_time`` goes through the field, which warns about naive
    times)."""
    params = dict(fields)
    params["payload"] = payload
    params["now"] = now = _adapted_now(db, fields["now"])
    event_time = params.pop("event_time", None)
    params["happened"] = (
        now if event_time is None else insert.time_field.get_db_prep_save(event_time, db)
    )
    return params


def _adapted_now(db: Any, now: datetime) -> Any:
    """``now`` as ``adapt_datetimefield_value`` makes it. On SQLite that is the naive text
    in the connection's time zone: for ``timezone.now()`` (aware, UTC) on a UTC connection,
    the same text without ``make_naive``'s conversion (it costs ~2 us of a save)."""
    if db.vendor == "sqlite" and now.tzinfo is UTC and db.timezone is UTC:
        return str(now.replace(tzinfo=None))
    return db.ops.adapt_datetimefield_value(now)


def _cursor(db: Any) -> Any:
    """The driver's own cursor of ``db``'s current connection, kept for the next save."""
    raw = db.connection
    kept = _cursors.get(db)
    if kept is not None and kept[0] is raw:
        return kept[1]
    cursor = raw.cursor()
    _cursors[db] = (raw, cursor)
    return cursor


#: One cursor per database wrapper (which Django keeps per thread), for its connection.
_cursors: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def write(*, using: str, **fields: Any) -> int | None:
    """INSERT one pending row (``kind``, ``payload``, ``owner_content_type_id``,
    ``owner_object_id``, ``connection_id``, ``source``, ``action``, ``now``, optionally
    ``event_time``); the new id, or None after a logged error. Off the save path
    (``send_*``): one savepoint around it in a transaction, wherever the database needs one."""
    db = connections[using]
    try:
        insert = _statement(using)
        payload = db.ops.adapt_json_value(fields["payload"], insert.payload_field.encoder)
        params = _params(insert, db, fields, payload)
        if db.in_atomic_block and db.vendor != "sqlite":
            with transaction.atomic(using=using):
                row_id = _execute(db, insert.sql, params)
        else:
            row_id = _execute(db, insert.sql, params)
    except DatabaseError:
        logger.exception("Could not write a Datadog outbox row; the host's save went ahead.")
        return None
    return row_id


def append(db: Any, **fields: Any) -> bool:
    """The save path's INSERT on the database wrapper ``db`` (the fields of ``write``, the
    payload as the JSON text the column stores, no id asked back): True once written, False
    after a logged error, which never reaches the host's transaction.

    One round trip, as the floor: SQLite rolls back only a failed statement; in autocommit
    nothing else is at stake; in a PostgreSQL transaction the savepoint travels in the same
    message as the INSERT (``Insert.guarded``) and is rolled back to only after a failure.
    The statement goes to the driver's cursor directly unless something watches the
    connection's statements (``execute_wrapper``, debug logging, query capture).
    """
    try:
        insert = _statement(db.alias)
        params = _params(insert, db, fields, fields["payload"])
        in_transaction = db.in_atomic_block and db.vendor != "sqlite"
        if in_transaction and insert.guarded is None:  # another database: its own savepoint
            with transaction.atomic(using=db.alias):
                _execute(db, insert.sql, params)
            return True
        guarded = insert.guarded if in_transaction else None
        watched = db.execute_wrappers or db.queries_logged or db.needs_rollback
        try:
            if db.connection is not None and not watched:
                _cursor(db).execute(guarded or insert.raw, params)
            else:
                with db.cursor() as cursor:
                    cursor.execute(guarded or insert.plain, params)
        except (DatabaseError, db.Database.Error):
            db.errors_occurred = True
            if guarded:
                _roll_back_to_savepoint(db)
            raise
    except (DatabaseError, db.Database.Error):
        logger.exception("Could not write a Datadog outbox row; the host's save went ahead.")
        return False
    return True


def _roll_back_to_savepoint(db: Any) -> None:
    """Undo a failed guarded INSERT; if even that fails, the transaction is lost: Django
    rolls it back at the end of the block, as after any failed savepoint."""
    try:
        with db.connection.cursor() as cursor:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}")
    except db.Database.Error:
        db.needs_rollback = True


def write_for_connections(
    connections: Iterable[Connection],
    *,
    kind: str,
    payload: dict[str, Any],
    source: str,
    now: datetime,
) -> int:
    """One pending row of ``payload`` per connection, in one bulk INSERT (off the save
    path: the sweeper's heartbeats)."""
    rows = [
        OutboxEvent(
            kind=kind, owner_content_type_id=conn.owner_content_type_id,
            owner_object_id=conn.owner_object_id, connection_id=conn.pk, payload=payload,
            source=source, event_time=now, created_at=now, next_attempt_at=now,
        )
        for conn in connections
    ]  # fmt: skip
    return len(OutboxEvent.objects.bulk_create(rows, batch_size=500))


def _execute(db: Any, sql: str, params: dict[str, Any]) -> int:
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        if _returning(db):
            return int(cursor.fetchone()[0])
        return int(db.ops.last_insert_id(cursor, OutboxEvent._meta.db_table, "id"))


# --- Leases ---------------------------------------------------------------------------

# "status NOT IN (every other status)" rather than "status = 'pending'": with the latter
# SQLite walks the (status, next_attempt_at) index instead of looking the ids up (10x).
NOT_PENDING = tuple(status for status in OutboxStatus if status != OutboxStatus.PENDING)


def lease_free(now: datetime) -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lt=now)


def due_rows(now: datetime) -> QuerySet[OutboxEvent]:
    pending = OutboxEvent.objects.filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now)
    return pending.filter(lease_free(now))


def held(token: str, ids: Iterable[int]) -> QuerySet[OutboxEvent]:
    """Rows among ``ids`` still pending and still leased to ``token``."""
    return OutboxEvent.objects.filter(pk__in=ids, lease_token=token).exclude(status__in=NOT_PENDING)


def finish_held(
    token: str, ids: list[int], *, status: str, at: datetime, code: str, detail: str,
    attempted: bool,
) -> int:  # fmt: skip
    """Give the rows among ``ids`` still pending and leased to ``token`` their last
    outcome, releasing the lease (counting the attempt when ``attempted``); how many were.
    One statement written here, not ``held().update()``: a delivery run writes one every
    few answers, and building the ORM's UPDATE cost more than sending a request."""
    if not ids:
        return 0
    db = connections[router.db_for_write(OutboxEvent)]
    quote = db.ops.quote_name
    assignments = [f"{quote(name)} = %s" for name in ("status", "finished_at", "last_error_code",
                                                      "last_error")]  # fmt: skip
    if attempted:
        assignments.append(f"{quote('attempts')} = {quote('attempts')} + 1")
    finished_at = OutboxEvent._meta.get_field("finished_at").get_db_prep_save(at, db)
    with db.cursor() as cursor:
        cursor.execute(
            _update_held(db, assignments, len(ids)),
            [status, finished_at, code, detail, *ids, token, OutboxStatus.PENDING.value],
        )
        return cursor.rowcount


def update_each(
    token: str, rows: list[OutboxEvent], fields: list[str], *, release: bool = True
) -> None:
    """Write per-row values of many leased rows with one ``executemany`` (releasing their
    lease unless told not to). ``bulk_update()`` builds a CASE expression per row: about
    1 ms a row here, more than the HTTP request."""
    if not rows:
        return
    db = connections[router.db_for_write(OutboxEvent)]
    columns: list[Any] = [OutboxEvent._meta.get_field(name) for name in fields]
    assignments = [f"{db.ops.quote_name(column.column)} = %s" for column in columns]
    params = [
        [column.get_db_prep_save(getattr(row, column.attname), db) for column in columns]
        + [row.pk, token, OutboxStatus.PENDING.value]
        for row in rows
    ]
    with db.cursor() as cursor:
        cursor.executemany(_update_held(db, assignments, 1, release=release), params)


def _update_held(db: Any, assignments: list[str], ids: int, *, release: bool = True) -> str:
    """``UPDATE`` of the outbox rows among ``ids`` ids (parameters after the assignments')
    still pending and leased to a token (the last two parameters), releasing the lease
    unless told not to: ``held()``'s condition, written once for the hand-built writes."""
    quote = db.ops.quote_name
    if release:
        assignments = [
            *assignments,
            f"{quote('lease_until')} = NULL",
            f"{quote('lease_token')} = ''",
        ]
    return (
        f"UPDATE {quote(OutboxEvent._meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
        f"WHERE {quote('id')} IN ({', '.join(['%s'] * ids)}) AND {quote('lease_token')} = %s "
        f"AND {quote('status')} = %s"
    )  # names come from the model, quoted; values are parameters


# --- Rows of one connection or site ----------------------------------------------------


def cancel_pending_for_connection(connection: Connection) -> int:
    """Cancel every row still waiting for ``connection`` (it is being revoked).

    Rows in flight right now are cancelled too; their result is not recorded over it.
    Returns the number of rows cancelled.
    """
    return (
        OutboxEvent.objects.filter(connection=connection)
        .filter(status__in=(OutboxStatus.PENDING, OutboxStatus.PARKED))
        .update(
            status=OutboxStatus.CANCELLED,
            finished_at=timezone.now(),
            last_error_code="cancelled",
            lease_until=None,
            lease_token="",
        )
    )


def park_pending_for_connection(connection: Connection, code: str, now: datetime) -> int:
    """Park every row waiting for ``connection`` (its key was refused): they wait for a
    repair instead of each spending an attempt on the same refusal."""
    return OutboxEvent.objects.filter(connection=connection, status=OutboxStatus.PENDING).update(
        status=OutboxStatus.PARKED, last_error_code=code, finished_at=now,
        lease_until=None, lease_token="",
    )  # fmt: skip


def postpone_pending(connection_ids: Iterable[int], until: datetime) -> int:
    """Push the pending rows of these connections back to ``until`` (a rate-limit pause)."""
    return OutboxEvent.objects.filter(
        connection_id__in=list(connection_ids),
        status=OutboxStatus.PENDING,
        next_attempt_at__lt=until,
    ).update(next_attempt_at=until)


def pending_for_site(domain: str) -> QuerySet[OutboxEvent]:
    return OutboxEvent.objects.filter(status=OutboxStatus.PENDING, connection__domain=domain)


REQUEUEABLE = (OutboxStatus.DEAD, OutboxStatus.PARKED, OutboxStatus.EXPIRED)


def requeue(rows: QuerySet[OutboxEvent]) -> int:
    """Send dead, parked or expired rows again: attempts reset, due now, age unchanged
    (a row past Datadog's horizon expires again instead of being sent)."""
    return rows.filter(status__in=REQUEUEABLE).update(
        status=OutboxStatus.PENDING, attempts=0, next_attempt_at=timezone.now(),
        finished_at=None, lease_until=None, lease_token="", last_error_code="", last_error="",
    )  # fmt: skip


# --- Housekeeping and the backlog --------------------------------------------------------

FINAL = (
    OutboxStatus.DELIVERED, OutboxStatus.NO_CONNECTION, OutboxStatus.DEAD, OutboxStatus.EXPIRED,
    OutboxStatus.CANCELLED, OutboxStatus.PARKED,
)  # fmt: skip


def purge(older_than: timedelta) -> int:
    """Delete finished rows (and parked ones) created before ``older_than`` ago."""
    cutoff = timezone.now() - older_than
    deleted, _ = OutboxEvent.objects.filter(status__in=FINAL, created_at__lt=cutoff).delete()
    return deleted


#: The periodic counts (the sweeper's, the monitoring report's) stop at this many rows of
#: a status: beyond it they read "at least" this many, and cost a bounded index range
#: instead of a count of a backlog that may hold millions of rows.
COUNT_CAP = 10_000


def count_due(at_most: int | None = None) -> int:
    """Due rows now; with ``at_most``, counted no further than that."""
    due = due_rows(timezone.now()).order_by()
    if at_most is None:
        return due.count()
    return due.values("pk")[:at_most].count()


@dataclass(frozen=True)
class Backlog:
    """Outbox rows by status, and since when the oldest due row has waited unclaimed
    (growing while no worker drains the outbox: a stopped or wedged cluster). With
    ``at_most``, a status counted at that number holds at least that many rows."""

    by_status: dict[str, int]
    oldest_due_since: datetime | None
    at_most: int | None = None

    def waiting_seconds(self, now: datetime) -> float | None:
        if self.oldest_due_since is None:
            return None
        return max((now - self.oldest_due_since).total_seconds(), 0.0)

    def shown(self, status: str) -> str:
        """The count of ``status`` as text: ``"10000+"`` where the count stopped."""
        count = self.by_status.get(status, 0)
        capped = self.at_most is not None and count >= self.at_most
        return f"{count}+" if capped else str(count)


def backlog(
    now: datetime | None = None,
    statuses: Iterable[str] | None = None,
    at_most: int | None = None,
) -> Backlog:
    """Counts by status (only ``statuses`` if given: finished rows are most of the table,
    the others are read off the status index; with ``at_most``, each of them counted no
    further than that, one bounded range of the index each) and the oldest due row."""
    now = now or timezone.now()
    rows = OutboxEvent.objects.order_by()
    oldest = due_rows(now).order_by().aggregate(oldest=Min("next_attempt_at"))["oldest"]
    if statuses is not None and at_most is not None:
        counted = {
            status: rows.filter(status=status).values("pk")[:at_most].count() for status in statuses
        }
        return Backlog({status: n for status, n in counted.items() if n}, oldest, at_most)
    if statuses is not None:
        rows = rows.filter(status__in=list(statuses))
    by_status = rows.values_list("status").annotate(n=Count("*"))
    return Backlog(dict(by_status), oldest)


#: Finished rows that count as failed on the dashboard: given up for good.
FAILED = (OutboxStatus.DEAD, OutboxStatus.EXPIRED)


def finished_per_hour(since: datetime) -> dict[tuple[datetime, str, str], int]:
    """Rows delivered or failed since ``since``, counted per (hour, kind, status) in SQL.

    A range of the partial finish-time index, which holds the three columns read, so the
    cost follows the rows in the window, not the table (the purge keeps weeks of them).
    """
    counted = (
        OutboxEvent.objects.order_by()
        .filter(finished_at__gte=since, status__in=(OutboxStatus.DELIVERED, *FAILED))
        .annotate(hour=TruncHour("finished_at", tzinfo=UTC))
        .values_list("hour", "kind", "status")
        .annotate(n=Count("*"))
    )
    return {(hour, kind, status): n for hour, kind, status, n in counted}
