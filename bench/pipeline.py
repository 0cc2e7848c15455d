"""The whole pipeline: a committed backlog of tracked saves drained by real ``qcluster``
processes (2 workers each) into the sink.

The saves run while no cluster is up, so their kicks wait in the broker as they would;
then the clusters start, and the rate is rows / (last arrival - first cluster running).
Tasks per event counts the ``deliver_due`` tasks the workers started (``bench.probe``);
lost and duplicates come from the outbox ids the sink received.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import clusters
from bench.figures import figure, spread
from bench.sinks import Sink
from bench.tenants import clear, save_orders


@dataclass(frozen=True)
class Counts:
    rounds: int
    rows: int


QUICK = Counts(rounds=1, rows=1000)
FULL = Counts(rounds=3, rows=5000)


@dataclass
class Drain:
    rate: float
    tasks_per_event: float
    lost: int
    duplicates: int


def drain_backlog(sink: Sink, latency_ms: int, rows: int, count: int = 1) -> Drain:
    clear()
    clusters.reset_task_log()
    save_orders(latency_ms, rows)
    sink.reset()
    started, ready = clusters.start(count)
    try:
        arrived = clusters.wait_for(sink, rows, timeout=max(90.0, rows / 50))
    finally:
        clusters.stop(started)
    stats = arrived.stats
    elapsed = (stats["last_at"] or ready) - ready
    return Drain(
        rate=stats["unique"] / elapsed if elapsed > 0 else 0.0,
        tasks_per_event=clusters.delivery_tasks() / rows,
        lost=rows - stats["unique"],
        duplicates=stats["duplicates"],
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


def two_clusters(label: str, sink: Sink, quick: bool) -> None:
    """At 50 ms only the round trip bounds a cluster, so a second one (a second host) can
    add what it brings; on loopback both would share the same two cores."""
    counts = QUICK if quick else FULL
    ratios, one_rates, two_rates = [], [], []
    for n in range(counts.rounds):
        pair = {}
        for size in (1, 2) if n % 2 == 0 else (2, 1):
            pair[size] = drain_backlog(sink, 50, counts.rows, count=size)
        ratios.append(pair[2].rate / pair[1].rate)
        one_rates.append(pair[1].rate)
        two_rates.append(pair[2].rate)
    figure(
        f"pipeline two clusters / one ({label}, 50 ms, {counts.rows:,} rows)",
        ratios,
        ">= 1.6",
        lambda r: r >= 1.6,
        sink=True,
        context=f"one {spread(one_rates)}, two {spread(two_rates)} events/s",
    )


def _all_zero(drains: list[Drain], field: str) -> bool:
    return all(getattr(d, field) == 0 for d in drains)
