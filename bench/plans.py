"""Query plans and bulk rows for the scale benches, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.db import connection


def explain(sql: str) -> str:
    """The plan of a captured statement (its parameters already interpolated)."""
    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql)
        rows = cursor.fetchall()
    if connection.vendor == "sqlite":
        return "\n".join(str(row[-1]) for row in rows)
    return "\n".join(str(row[0]) for row in rows)


def full_scan(plan: str, table: str) -> bool:
    """Whether the plan reads every row of ``table`` (not through an index)."""
    for line in plan.splitlines():
        words = line.strip().replace("->", "").split()
        if connection.vendor == "sqlite":
            if words[:2] == ["SCAN", table] and "INDEX" not in words:
                return True
        elif "Seq Scan on " + table in line:
            return True
    return False


class StatementTimes:
    """An ``execute_wrapper`` timing each statement on the monotonic clock (the captured
    queries' own times are rounded to the millisecond)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, execute: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(*args)
        finally:
            self.seconds.append(time.perf_counter() - start)


def median_ms(op: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        op()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def clone(model: Any, template_pk: int, count: int, overrides: Mapping[str, str]) -> None:
    """``count`` copies of one row in one INSERT ... SELECT over a counter ``n`` (a recursive
    CTE, on both databases); ``overrides`` maps columns to SQL expressions of ``n``."""
    quote = connection.ops.quote_name
    columns = [f.column for f in model._meta.concrete_fields if not f.primary_key]
    values = ", ".join(overrides.get(c, f"t.{quote(c)}") for c in columns)
    table = quote(model._meta.db_table)
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "
        f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) "
        f"SELECT {values} FROM s, {table} t WHERE t.{quote('id')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [count, template_pk])
    analyze(model)


def analyze(model: Any) -> None:
    """Fresh planner statistics of ``model``'s table (after a bulk change)."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}" if connection.vendor != "sqlite" else "ANALYZE")


def as_text(expression: str) -> str:
    return f"CAST({expression} AS TEXT)"
