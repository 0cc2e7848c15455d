"""The whole pipeline: a committed backlog of tracked saves drained by real ``qcluster``
processes (2 workers each) into the sink.

The saves run while no cluster is up, so their kicks wait in the broker as they would;
then the clusters start, and the rate is rows / (last arrival - first cluster running).
Tasks per event counts the ``deliver_due`` tasks the workers started (``bench.probe``);
lost and duplicates come from the outbox ids the sink received.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from bench import clusters
from bench.figures import detail, figure, spread
from bench.sinks import Sink
from bench.tenants import clear, save_orders


@dataclass(frozen=True)
class Counts:
    rounds: int
    rows: int


# Quick: 3,000 rows, so the two-clusters drain at 50 ms lasts a few seconds (1,000 rows
# were over before the second cluster's tasks had their share: 0.97 in CI).
QUICK = Counts(rounds=1, rows=3000)
FULL = Counts(rounds=3, rows=5000)


@dataclass
class Drain:
    rate: float
    tasks_per_event: float
    lost: int
    duplicates: int
    cores: float  # CPU the clusters used while draining, in cores (CPU seconds / second)


def drain_backlog(
    sink: Sink, latency_ms: int, rows: int, count: int = 1, partner: dict[str, Any] | None = None
) -> Drain:
    clear()
    clusters.reset_task_log()
    save_orders(latency_ms, rows)
    sink.reset()
    started, ready = clusters.start(count, partner)
    try:
        arrived = clusters.wait_for(sink, rows, timeout=max(90.0, rows / 50))
        cpu = clusters.cpu_since_ready(started)
        drained_at = time.time()
    finally:
        clusters.stop(started)
    stats = arrived.stats
    elapsed = (stats["last_at"] or ready) - ready
    return Drain(
        rate=stats["unique"] / elapsed if elapsed > 0 else 0.0,
        tasks_per_event=clusters.delivery_tasks() / rows,
        lost=rows - stats["unique"],
        duplicates=stats["duplicates"],
        cores=cpu / max(drained_at - ready, 1e-9),
    )


def run(label: str, sink: Sink, quick: bool) -> None:
    counts = QUICK if quick else FULL
    drains = [drain_backlog(sink, 0, counts.rows) for _ in range(counts.rounds)]
    name = f"pipeline ({label}, 1 cluster x 2 workers, {counts.rows:,} rows, loopback)"
    figure(f"{name} events/s", [d.rate for d in drains], ">= 1,500", lambda r: r >= 1500, sink=True)
    figure(
        f"{name} tasks per event",
        [d.tasks_per_event for d in drains],
        "<= 0.01",
        lambda r: r <= 0.01,
    )
    figure(f"{name} lost rows", [d.lost for d in drains], "0", lambda _: _all_zero(drains, "lost"))
    figure(
        f"{name} duplicates",
        [d.duplicates for d in drains],
        "0",
        lambda _: _all_zero(drains, "duplicates"),
    )


#: Requests in flight per delivery task in the two-clusters figure: one cluster (2 workers)
#: then holds at most 2 x 16 = 32, at most 640 events/s at 50 ms, so one cluster is bound by
#: the round trip and two together still fit in the CPU this machine has for them.
HOST_IN_FLIGHT = 16


def two_clusters(label: str, sink: Sink, quick: bool) -> None:
    """What a second host adds: at 50 ms, with each cluster held to ``HOST_IN_FLIGHT``
    requests per task so the round trip, not the CPU the two processes share here, bounds
    it (a host of its own would bring its own cores). The same ratio unbounded follows,
    indented: there one cluster already uses what the two cores give it."""
    counts = QUICK if quick else FULL
    ratios, context = _one_and_two(sink, counts, {"DELIVERY_CONCURRENCY": HOST_IN_FLIGHT})
    figure(
        f"pipeline two clusters / one ({label}, 50 ms, {counts.rows:,} rows, "
        f"{HOST_IN_FLIGHT} in flight per task)",
        ratios,
        ">= 1.6",
        lambda r: r >= 1.6,
        sink=True,
        context=context,
    )
    ratios, context = _one_and_two(sink, counts, None)
    detail(f"unbounded (in flight as the round trip needs): {spread(ratios)}, {context}", 400)


def _one_and_two(
    sink: Sink, counts: Counts, partner: dict[str, Any] | None
) -> tuple[list[float], str]:
    """Ratios of two clusters' rate to one's, per round, and what each side ran at."""
    ratios, ones, twos = [], [], []
    for n in range(counts.rounds):
        pair = {}
        for size in (1, 2) if n % 2 == 0 else (2, 1):
            pair[size] = drain_backlog(sink, 50, counts.rows, count=size, partner=partner)
        ratios.append(pair[2].rate / pair[1].rate)
        ones.append(pair[1])
        twos.append(pair[2])
    context = (
        f"one {spread([d.rate for d in ones])} events/s using "
        f"{spread([d.cores for d in ones])} cores, two {spread([d.rate for d in twos])} "
        f"events/s using {spread([d.cores for d in twos])} cores (of {os.cpu_count()})"
    )
    return ratios, context


def _all_zero(drains: list[Drain], field: str) -> bool:
    return all(getattr(d, field) == 0 for d in drains)
