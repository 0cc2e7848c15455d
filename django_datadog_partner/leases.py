"""Leasing due outbox rows in one statement: ``UPDATE ... WHERE id IN (due ids) RETURNING``.

A claim used to be three statements (the due ids, the conditional UPDATE that leases them,
the leased rows read back) and the ORM's model instances; at 200 rows most of its time was
Python. Here PostgreSQL and SQLite (3.35+) do it in one statement: the due rows are picked
(on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so concurrent claims skip each other's
rows, and on a plain table by tuple id, ``ctid``), the rows still pending and lease-free
are leased, and their claimed columns come back, turned into instances with the fields'
own converters (times as epoch microseconds on PostgreSQL, as text on SQLite:
``_returned``) and without ``Model.__init__`` (the other columns stay deferred, as with
``.only()``), a column at a time. The due rows' SQL is compiled once (``Due``) and
payloads are decoded without ``json.loads``' whitespace scans: with both, the Python around
the statement takes under half what it did. Other databases keep the three statements.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router, transaction
from django.db.models import JSONField, QuerySet
from django.db.models.base import ModelState
from django.db.models.expressions import RawSQL
from django.utils.dateparse import parse_datetime

from .models import OutboxEvent
from .outbox import NOT_PENDING, held, lease_free


def one_statement(db: Any) -> bool:
    """Whether ``db`` can lease and read back in one ``UPDATE ... RETURNING``."""
    if db.vendor == "postgresql":
        return True
    return db.vendor == "sqlite" and db.Database.sqlite_version_info >= (3, 35)


ONE_DAY = timedelta(days=1)


def probe() -> datetime:
    """A stand-in time for statements compiled once (their parameters are checked or
    replaced): aware or naive as the project's times are (``USE_TZ``)."""
    stand_in = datetime(2000, 1, 1, tzinfo=UTC)
    return stand_in if settings.USE_TZ else stand_in.replace(tzinfo=None)


@dataclass(frozen=True)
class Due:
    """The due rows ``build(now, since)`` selects, in the order to take them. A claim's
    candidates come in this form so their SQL is compiled once per database and shape
    (with ``since`` or without), and only the times and the limit change from claim to
    claim: building and compiling the queryset cost a tenth of a 200-row claim."""

    build: Callable[[datetime, datetime | None], QuerySet[OutboxEvent]]
    now: datetime
    since: datetime | None = None

    def queryset(self) -> QuerySet[OutboxEvent]:
        return self.build(self.now, self.since)


def lease(
    token: str,
    candidates: QuerySet[OutboxEvent] | Due,
    limit: int,
    now: datetime,
    until: datetime,
    fields: Sequence[str],
) -> list[OutboxEvent]:
    """Lease up to ``limit`` of ``candidates`` (due rows, in the order to take them) to
    ``token`` until ``until``; the rows this claim got, by id, with ``fields`` loaded."""
    db = connections[router.db_for_write(OutboxEvent)]
    if not one_statement(db):
        chosen = candidates.queryset() if isinstance(candidates, Due) else candidates
        return _three_statements(token, chosen, limit, now, until, fields)
    meta = OutboxEvent._meta
    quote = db.ops.quote_name
    # The lease's own values are known: not read back (each timestamp costs a conversion).
    known = {"lease_until": until, "lease_token": token}
    columns: list[Any] = [meta.pk, *(meta.get_field(name) for name in fields if name not in known)]
    if isinstance(candidates, Due):
        inner, inner_params = _picked(db.alias, candidates, limit)
    else:
        inner, inner_params = _compile(db, candidates, limit)
    if db.features.has_select_for_update_skip_locked:
        inner += " FOR UPDATE SKIP LOCKED"
    guard, guard_params = _guard(db.alias), (field_now(db, now), *NOT_PENDING)
    table = quote(meta.db_table)
    returned, loaders = _returned(db, columns)
    sql = (
        f"UPDATE {table} SET {quote('lease_until')} = %s, {quote('lease_token')} = %s "  # noqa: S608
        f"WHERE {_picked_rows(db, inner)} AND {guard} RETURNING {', '.join(returned)}"
    )  # names come from the model, quoted; values are parameters
    field = meta.get_field("lease_until")
    params = [field.get_db_prep_save(until, db), token, *inner_params, *guard_params]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    rows = _instances(db, columns, found, loaders)
    lease_values = {name: value for name, value in known.items() if name in fields}
    for row in rows:
        row.__dict__.update(lease_values)
    return sorted(rows, key=lambda row: row.pk)


def _compile(db: Any, candidates: QuerySet[OutboxEvent], limit: int) -> tuple[str, list[Any]]:
    """The SQL selecting the first ``limit`` of ``candidates``: their ids, or where each
    lies (``ctid``, read under the row lock the claim takes: ``_by_tuple_id``)."""
    picked: QuerySet[Any, Any]
    if _by_tuple_id(db.alias):
        table = db.ops.quote_name(OutboxEvent._meta.db_table)  # the model's, quoted
        picked = candidates.annotate(tid=RawSQL(f"{table}.ctid", ())).values("tid")  # noqa: S611
    else:
        picked = candidates.values("pk")
    sql, params = picked[:limit].query.get_compiler(using=db.alias).as_sql()
    return sql, list(params)


def _picked_rows(db: Any, inner: str) -> str:
    """The outer UPDATE's rows: those ``inner`` picked. On a plain PostgreSQL table by
    where they lie, a TID scan instead of a look-up in the primary key's index per row
    (a quarter of the statement's execution for 200 rows). A row updated by another
    transaction between this statement's snapshot and its lock now lies elsewhere: it is
    not leased this time (still pending, it is due for the next claim)."""
    if _by_tuple_id(db.alias):
        return f"ctid = ANY(ARRAY({inner}))"
    return f"{db.ops.quote_name('id')} IN ({inner})"


def forget() -> None:
    """Forget what is looked up and compiled once per process (tests that change the
    outbox's table)."""
    _by_tuple_id.cache_clear()
    _template.cache_clear()


@functools.lru_cache(maxsize=8)
def _by_tuple_id(alias: str) -> bool:
    """Whether claims on ``alias`` find their rows by tuple id: on PostgreSQL, when the
    outbox is one plain table. Each partition of a partitioned table (or child of an
    inherited one) numbers its tuples from the start, so there a tuple id names a row in
    each. Looked up once per process."""
    db = connections[alias]
    if db.vendor != "postgresql":
        return False
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT relkind = 'r' AND NOT relhassubclass FROM pg_class WHERE oid = to_regclass(%s)",
            [db.ops.quote_name(OutboxEvent._meta.db_table)],
        )
        found = cursor.fetchone()
    return bool(found and found[0])


def _picked(alias: str, due: Due, limit: int) -> tuple[str, list[Any]]:
    """The SQL picking ``limit`` of ``due``'s rows, and its parameters for ``due``'s times."""
    db = connections[alias]
    sql, slots = _template(alias, due.build, due.since is not None)
    times = {NOW: field_now(db, due.now), SINCE: due.since and field_now(db, due.since)}
    return sql.replace(_ANY_LIMIT, f" LIMIT {int(limit)}"), [
        times[slot] if type(slot) is _Slot else slot for slot in slots
    ]


class _Slot(str):
    """Where a compiled template takes one of the claim's times."""


NOW, SINCE = _Slot("now"), _Slot("since")
#: The limit a template is compiled with, replaced by each claim's own (a latency-bound
#: run's limit moves with every answer: one template per limit would rarely be reused).
_ANY_LIMIT = " LIMIT 987654321"
#: Stand-in (now, since) pairs, in days after ``probe()``: the second pair's gap differs
#: from the first's, so no parameter derived from one time passes for the other in both.
_STAND_INS = ((0, 1), (10, 13))


@functools.lru_cache(maxsize=32)
def _template(alias: str, build: Any, with_since: bool) -> tuple[str, tuple[Any, ...]]:
    """``build``'s SQL, compiled with two sets of stand-in times: the parameters equal to
    the times become slots, the others are taken as they are, and both compilations must
    agree (else the SQL depends on the times in a way the slots cannot carry)."""
    db = connections[alias]
    compiled = []
    for now_day, since_day in _STAND_INS:
        now, since = probe() + now_day * ONE_DAY, probe() + since_day * ONE_DAY
        queryset = build(now, since if with_since else None)
        sql, params = _compile(db, queryset, int(_ANY_LIMIT.split()[-1]))
        stand_ins = {field_now(db, now): NOW}
        if with_since:
            stand_ins[field_now(db, since)] = SINCE
        compiled.append((sql, [stand_ins.get(value, value) for value in params]))
    (sql, slots), (again, slots_again) = compiled
    if sql != again or slots != slots_again or sql.count(_ANY_LIMIT) != 1:
        raise ImproperlyConfigured("The outbox's due rows do not compile to one statement.")
    return sql, tuple(slots)


def field_now(db: Any, now: datetime) -> Any:
    return OutboxEvent._meta.get_field("lease_until").get_db_prep_value(now, db)


@functools.lru_cache(maxsize=8)
def _guard(alias: str) -> str:
    """The outer UPDATE's condition, ``lease_free(now)`` and still pending (the ORM's own
    WHERE of that queryset, compiled once per database: ~0.2 ms a claim otherwise); its
    parameters are ``now`` and ``NOT_PENDING`` (checked when it is compiled)."""
    db = connections[alias]
    sql, params = _where(db, _free(probe()))
    if tuple(params) != (field_now(db, probe()), *NOT_PENDING):
        raise ImproperlyConfigured(f"The outbox lease guard's parameters changed: {params!r}")
    return sql


def _free(now: datetime) -> QuerySet[OutboxEvent]:
    return OutboxEvent.objects.filter(lease_free(now)).exclude(status__in=NOT_PENDING)


def _where(db: Any, queryset: QuerySet[OutboxEvent]) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of ``queryset``, for the outer UPDATE of the same table."""
    sql, params = queryset.order_by().values("pk").query.get_compiler(using=db.alias).as_sql()
    return sql.split(" WHERE ", 1)[1], tuple(params)


#: Where a returned column is an epoch in microseconds: the time it stands for.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _from_epoch(value: Any, expression: Any, db: Any) -> datetime | None:
    return None if value is None else EPOCH + timedelta(0, 0, value)  # positional: faster


def _returned(db: Any, columns: list[Any]) -> tuple[list[str], dict[str, Any]]:
    """The RETURNING list of ``columns``, and the converters that replace a column's own.

    On PostgreSQL with ``USE_TZ`` and a UTC connection, a time column comes back as
    integer microseconds since the epoch (exact: ``EXTRACT`` is numeric from PostgreSQL 14,
    Django 5.2's oldest): psycopg's ``timestamptz`` loader, which Django subclasses in
    Python to set the time zone, costs ~3 us a value, 1.2 ms of a 200-row claim. On
    SQLite (UTC or naive times) it comes back as its stored text, parsed once: the column
    itself went through two parsers (``sqlite3``'s for its declared type, then Django's
    time zone check), about a fifth of a 200-row claim. The instance gets the same
    ``datetime`` either way."""
    quote = db.ops.quote_name
    epoch = db.vendor == "postgresql" and settings.USE_TZ and db.timezone is UTC
    text = db.vendor == "sqlite" and (db.timezone is UTC or not settings.USE_TZ)
    returned, loaders = [], {}
    for column in columns:
        name = quote(column.column)
        if epoch and column.get_internal_type() == "DateTimeField":
            name = f"(EXTRACT(EPOCH FROM {name}) * 1000000)::bigint"
            loaders[column.attname] = [_from_epoch]
        elif text and column.get_internal_type() == "DateTimeField":
            name = f"CAST({name} AS TEXT)"  # an expression: no declared type to convert by
            loaders[column.attname] = [_text_loader(db, column)]
        elif isinstance(column, JSONField) and column.decoder is None:
            loaders[column.attname] = [_json_loader(column)]
        returned.append(name)
    return returned, loaders


def _text_loader(db: Any, column: Any) -> Any:
    """A time stored as SQLite text, as Django gives it: ``sqlite3``'s parser for the
    declared type, then the backend's time zone check. Django stores UTC times as
    ``YYYY-MM-DD HH:MM:SS[.ffffff]``: that text gets its offset appended and parsed
    once (a tenth of ``replace(tzinfo=...)``); anything else (another shape, an offset,
    a date alone, text that is no time) takes Django's own path."""
    offset = "+00:00" if settings.USE_TZ else ""
    converters = _orm_converters(db, column)

    def from_text(value: Any, expression: Any, db: Any) -> Any:
        if type(value) is str:
            if len(value) in (19, 26) and value[10] == " " and value[4] == "-":
                try:  # not ``contextlib.suppress``: it costs as much as the parse
                    return datetime.fromisoformat(value + offset)
                except ValueError:
                    pass
            value = parse_datetime(value)  # what ``sqlite3`` does by the declared type
        for converter in converters:
            value = converter(value, expression, db)
        return value

    return from_text


def _orm_converters(db: Any, column: Any) -> list[Any]:
    """What the ORM converts ``column``'s fetched values with: the backend's, then the
    field's own."""
    col = column.get_col(OutboxEvent._meta.db_table)
    return [*db.ops.get_db_converters(col), *column.get_db_converters(db)]


_decoder = json.JSONDecoder()


def _json_loader(field: JSONField[Any]) -> Any:
    """``field.from_db_value`` without ``json.loads``' two whitespace scans around the
    document (the database's text has none): a third of decoding a payload. Anything else
    still goes through the field's own converter."""

    def from_json(value: Any, expression: Any, db: Any) -> Any:
        if type(value) is str:
            try:
                decoded, end = _decoder.raw_decode(value)
            except ValueError:
                pass
            else:
                if end == len(value):
                    return decoded
        return field.from_db_value(value, expression, db)

    return from_json


def _instances(
    db: Any,
    columns: list[Any],
    found: list[tuple[Any, ...]],
    loaders: dict[str, Any] | None = None,
) -> list[OutboxEvent]:
    """Model instances from rows of ``columns`` (values converted as the ORM would, or by
    ``loaders`` where given: only the columns that have converters go through them, the
    others are taken as fetched)."""
    if not found:
        return []
    attnames = [column.attname for column in columns]
    # Converted a column at a time: one comprehension per converter, not a call per value.
    by_column = [list(values) for values in zip(*found, strict=True)]
    for n, column in enumerate(columns):
        col = column.get_col(OutboxEvent._meta.db_table)
        functions = (loaders or {}).get(column.attname) or _orm_converters(db, column)
        for function in functions:
            by_column[n] = [function(value, col, db) for value in by_column[n]]
    rows = []
    alias = db.alias
    for values in zip(*by_column, strict=True):
        row = OutboxEvent.__new__(OutboxEvent)
        state = ModelState()
        state.adding, state.db = False, alias
        data: dict[str, Any] = dict(zip(attnames, values, strict=True))
        data["_state"] = state
        row.__dict__.update(data)
        rows.append(row)
    return rows


def _three_statements(
    token: str,
    candidates: QuerySet[OutboxEvent],
    limit: int,
    now: datetime,
    until: datetime,
    fields: Sequence[str],
) -> list[OutboxEvent]:
    """Select the due ids, lease them with a conditional UPDATE, read the leased rows."""
    db = connections[router.db_for_write(OutboxEvent)]
    skip_locked = db.features.has_select_for_update_skip_locked
    with transaction.atomic(using=db.alias):
        if skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        # On a database without row locks the SELECT above locks nothing: this conditional
        # UPDATE (still pending, lease free) is what makes a row belong to one run only.
        OutboxEvent.objects.filter(pk__in=ids).exclude(status__in=NOT_PENDING).filter(
            lease_free(now)
        ).update(lease_until=until, lease_token=token)
    return list(held(token, ids).only(*fields).order_by("pk"))
