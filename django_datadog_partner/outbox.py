"""Writing outbox rows on the host's save path: one INSERT, nothing else.

The floor for durable capture is one extra INSERT in the caller's transaction
(``perf-baselines.md`` §1: 1.8-1.9x a plain save on SQLite). ``Model.save()`` and the
INSERT compiler add more than that again in Python, so this module issues a prepared
INSERT with values adapted by the model's own fields. A database error is logged and never
reaches the host: on PostgreSQL the INSERT runs in a savepoint (a failed statement would
poison the host's transaction); SQLite rolls back only the failed statement, and a plain
cursor call, unlike ``Model.save()``, does not mark the transaction for rollback.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connections, transaction

from .kick import request_kick
from .models import OutboxEvent, OutboxStatus

logger = logging.getLogger("django_datadog_partner.tracking")

COLUMNS = ("kind", "owner_content_type", "owner_object_id", "connection", "payload", "source",
           "action", "status", "prepared", "attempts", "event_time", "created_at",
           "next_attempt_at", "lease_token", "last_error_code", "last_error")  # fmt: skip


@functools.lru_cache(maxsize=8)
def _statement(using: str) -> tuple[str, Any, Any]:
    """The INSERT for ``using``, and the fields whose values need adapting (JSON, time);
    the other columns take plain ``str``/``int``/``bool``/``None`` values as they are."""
    connection = connections[using]
    quote = connection.ops.quote_name
    fields: tuple[Any, ...] = tuple(OutboxEvent._meta.get_field(name) for name in COLUMNS)
    columns = ", ".join(quote(field.column) for field in fields)
    # Table and column names come from the model, quoted; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(OutboxEvent._meta.db_table)} ({columns}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    if _returning(connection):
        sql += f" RETURNING {quote('id')}"
    return sql, OutboxEvent._meta.get_field("payload"), OutboxEvent._meta.get_field("created_at")


def _returning(db: Any) -> bool:
    """SQLite hands over the new id as ``lastrowid`` for free; RETURNING would cost a
    result row (measured: 0.09x of a save)."""
    return bool(db.features.can_return_columns_from_insert) and db.vendor != "sqlite"


def write(
    *,
    kind: str,
    payload: dict[str, Any],
    owner_content_type_id: int | None,
    owner_object_id: str,
    connection_id: int | None,
    source: str,
    action: str,
    now: datetime,
    event_time: datetime | None = None,
    using: str,
) -> int | None:
    """INSERT one pending row and request a kick; the new id, or None after a logged error."""
    db = connections[using]
    try:
        sql, payload_field, time_field = _statement(using)
        moment = time_field.get_db_prep_save(now, db)
        happened = moment if event_time is None else time_field.get_db_prep_save(event_time, db)
        params = [
            kind, owner_content_type_id, owner_object_id, connection_id,
            payload_field.get_db_prep_save(payload, db), source, action, OutboxStatus.PENDING.value,
            False, 0, happened, moment, moment, "", "", "",
        ]  # fmt: skip
        if db.in_atomic_block and db.vendor != "sqlite":
            with transaction.atomic(using=using):
                row_id = _execute(db, sql, params)
        else:
            row_id = _execute(db, sql, params)
    except DatabaseError:
        logger.exception("Could not write a Datadog outbox row; the host's save went ahead.")
        return None
    try:
        request_kick(using)
    except Exception:  # the sweeper delivers anyway; the host's save must go on
        logger.exception("Could not request a delivery kick; the sweeper will deliver.")
    return row_id


def _execute(db: Any, sql: str, params: list[Any]) -> int:
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        if _returning(db):
            return int(cursor.fetchone()[0])
        return int(db.ops.last_insert_id(cursor, OutboxEvent._meta.db_table, "id"))
