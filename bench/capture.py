"""Capture on the save path: tracked save vs plain save vs the floor, and untracked models.

The floor is the plain save plus one bare outbox INSERT (pre-encoded payload, a prepared
statement, nothing else) in the same transaction: what durable capture cannot go below.
The goal is tracked / plain <= 1.10 x floor / plain, i.e. tracked / floor <= 1.10. Cases
run in alternating chunks inside each round, so the machine's drift hits them alike; a
round compares the cases' median chunks, and each figure is the median of the rounds.
``CONN_MAX_AGE`` matters only if something on the save path closes the connection
(django-q2's ORM broker does, outside atomic).

Beside each figure, the same ratio in CPU time (``cpu tracked/floor``): the saving thread's
CPU plus, on PostgreSQL, its server process's (``/proc``), summed over a round's chunks. On
a shared 2-core machine wall time also counts the time spent waiting for a core, which
swings a 10% difference either way; CPU time is the work each case makes the machine do.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.utils import timezone

from bench.figures import figure, spread

MODES = [(atomic, max_age) for atomic in (True, False) for max_age in (0, 60)]


@dataclass(frozen=True)
class Counts:
    rounds: int
    saves: int  # per case per round
    chunks: int


QUICK = Counts(rounds=1, saves=300, chunks=6)
FULL = Counts(rounds=5, saves=3000, chunks=10)


def bare_insert() -> Callable[[], None]:
    """One outbox INSERT of the row a tracked save writes, values adapted once: the floor's
    extra statement (only the three timestamps are taken per row)."""
    from django_datadog_partner.models import OutboxEvent
    from tests.testapp.models import Organization

    meta: Any = OutboxEvent._meta
    payload = {"title": "Order updated", "text": json.dumps({"status": "new"})}
    fixed = {
        "kind": "event",
        "owner_content_type_id": ContentType.objects.get_for_model(Organization).pk,
        "owner_object_id": "1",
        "payload": meta.get_field("payload").get_db_prep_save(payload, connection),
        "source": "testapp.order",
        "action": "created",
        "status": "pending",
        "prepared": False,
        "attempts": 0,
        "lease_token": "",
        "last_error_code": "",
        "last_error": "",
    }
    times = ("event_time", "created_at", "next_attempt_at")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(name) for name in [*fixed, *times])
    marks = ", ".join(["%s"] * (len(fixed) + len(times)))
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({marks})"
    time_field = meta.get_field("created_at")

    def insert() -> None:
        now = time_field.get_db_prep_save(timezone.now(), connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, [*fixed.values(), now, now, now])

    return insert


def set_max_age(seconds: int) -> None:
    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = seconds


def timed(op: Callable[[], None], count: int, atomic: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``count`` runs of ``op``."""
    cpu = cpu_seconds()
    start = time.perf_counter()
    if atomic:
        for _ in range(count):
            with transaction.atomic():
                op()
    else:
        for _ in range(count):
            op()
    wall = time.perf_counter() - start
    return wall, cpu_seconds() - cpu


def cpu_seconds() -> float:
    """This thread's CPU time, plus its PostgreSQL server process's (same machine)."""
    spent = time.thread_time()
    if connection.vendor != "postgresql":
        return spent
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return spent + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(label: str, quick: bool) -> None:
    from django_datadog_partner.models import OutboxEvent
    from django_datadog_partner.tracking import registry
    from tests.testapp.models import Order, Organization, Untracked

    counts = QUICK if quick else FULL
    org = Organization.objects.create(name="capture")
    floor_insert = bare_insert()

    def save() -> None:
        Order.objects.create(organization=org, number="1")

    def floor() -> None:
        save()
        floor_insert()

    def untracked() -> None:
        Untracked.objects.create(name="x")

    def tracking(on: bool) -> None:
        if on:
            registry.register_from_settings()
        else:
            for model in registry.models():
                registry.unregister(model)

    # (name, op, tracking on): tracking off for the baselines, so they pay no receiver.
    cases: list[tuple[str, Callable[[], None], bool]] = [
        ("tracked", save, True),
        ("plain", save, False),
        ("floor", floor, False),
        ("untracked_on", untracked, True),
        ("untracked_off", untracked, False),
    ]
    size = counts.saves // counts.chunks
    for atomic, max_age in MODES:
        set_max_age(max_age)
        ratios: dict[str, list[float]] = {
            "tracked/floor": [],
            "tracked/plain": [],
            "floor/plain": [],
            "untracked": [],
        }
        for case in cases:  # warm-up
            tracking(case[2])
            timed(case[1], size, atomic)
        plain_us: list[float] = []
        cpu_ratios: list[float] = []
        for n in range(counts.rounds):
            chunks: dict[str, list[float]] = {name: [] for name, _, _ in cases}
            cpu = dict.fromkeys(chunks, 0.0)
            for chunk in range(counts.chunks):
                for name, op, on in _order(cases, n * counts.chunks + chunk):
                    tracking(on)
                    wall, spent = timed(op, size, atomic)
                    chunks[name].append(wall / size)
                    cpu[name] += spent
            _clear(Order, Untracked, OutboxEvent)
            # A chunk the VM stalled in counts once, not by its length: medians of chunks.
            per_op = {name: statistics.median(times) for name, times in chunks.items()}
            ratios["tracked/floor"].append(per_op["tracked"] / per_op["floor"])
            ratios["tracked/plain"].append(per_op["tracked"] / per_op["plain"])
            ratios["floor/plain"].append(per_op["floor"] / per_op["plain"])
            ratios["untracked"].append(per_op["untracked_on"] / per_op["untracked_off"])
            plain_us.append(per_op["plain"] * 1e6)
            cpu_ratios.append(cpu["tracked"] / cpu["floor"])
        tracking(True)
        mode = f"{label}, {'atomic' if atomic else 'autocommit'}, CONN_MAX_AGE={max_age}"
        context = f"cpu tracked/floor {spread(cpu_ratios)}, {_context(ratios, plain_us)}"
        figure(
            f"capture tracked/floor ({mode})",
            ratios["tracked/floor"],
            "<= 1.10",
            lambda r: r <= 1.10,
            context=context,
        )
        if atomic and max_age == 0:
            figure(
                f"capture untracked model with tracking on/off ({mode})",
                ratios["untracked"],
                "<= 1.02",
                lambda r: r <= 1.02,
            )
    set_max_age(0)


def _order(cases: list[Any], step: int) -> list[Any]:
    """Rotated, and reversed every other step: each case takes every position and follows
    each other case about as often (the one before leaves caches and the WAL behind)."""
    shift = step % len(cases)
    rotated = cases[shift:] + cases[:shift]
    return rotated[::-1] if (step // len(cases)) % 2 else rotated


def _context(ratios: dict[str, list[float]], plain_us: list[float]) -> str:
    return (
        f"tracked/plain {spread(ratios['tracked/plain'])}, "
        f"floor/plain {spread(ratios['floor/plain'])}, "
        f"plain save {spread(plain_us, ' us')}"
    )


def _clear(*models: Any) -> None:
    for model in models:
        model.objects.all()._raw_delete(connection.alias)
