"""One worker in this process (``delivery.drain``: claim, route, send, record) against the
sink: vs a bare ``requests.Session`` loop on loopback, and at 50 and 200 ms round trips
as a share of its own loopback rate (measured in the same round, order rotated)."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from bench.figures import figure, spread
from bench.sinks import Sink
from bench.tenants import clear, tenant


@dataclass(frozen=True)
class Counts:
    rounds: int
    loopback: int
    latency: dict[int, int]  # events per latency, at least
    round_trips: int  # a latency drain's length at the loopback rate, at least


# A latency drain lasts some 24 round trips or more at the loopback rate (12 in the quick
# run: ``round_trips``), so the ramp-up and the last round trip (no request can be answered
# sooner) weigh as little as in a backlog: 1,500 rows at 200 ms were 3-4 round trips, a
# third of them the tail. A faster worker gets more rows (``latency_count``).
QUICK = Counts(rounds=1, loopback=600, latency={50: 1500, 200: 3000}, round_trips=12)
FULL = Counts(rounds=5, loopback=3000, latency={50: 6000, 200: 12000}, round_trips=24)
MOST_ROWS = 40_000


def latency_count(counts: Counts, latency_ms: int, loopback_rate: float) -> int:
    """Rows for a drain at ``latency_ms``: as many round trips at ``loopback_rate`` as
    ``counts`` asks, at least its count of rows, at most ``MOST_ROWS``."""
    wanted = loopback_rate * latency_ms / 1000 * counts.round_trips
    return min(MOST_ROWS, max(counts.latency[latency_ms], round(wanted)))


@dataclass
class Drained:
    rate: float
    opened: int  # connections the sink saw opened during the run
    most_in_flight: int  # requests the worker had in flight at once
    most_at_sink: int  # requests the sink held unanswered at once


@contextlib.contextmanager
def counting_in_flight() -> Iterator[list[int]]:
    """The most requests the worker had in flight at once (``[most]``, once the block
    ends): jobs started and not finished, counted in the worker, since the sink stops
    counting a request once it wrote the answer, which the worker may not have read yet
    (it reads 16 answers per look)."""
    from django_datadog_partner.delivery import pacing

    start, run = pacing.Sender._start, pacing.Sender.run
    now, most = [0], [0]

    def counted_start(sender: Any, *args: Any) -> None:
        now[0] += 1
        most[0] = max(most[0], now[0])
        start(sender, *args)

    def counted_run(sender: Any, *args: Any) -> Iterator[Any]:
        for results in run(sender, *args):
            now[0] = max(0, now[0] - 1)  # jobs run inline (one at a time) were not counted
            yield results

    pacing.Sender._start, pacing.Sender.run = counted_start, counted_run  # type: ignore[method-assign]
    try:
        yield most
    finally:
        pacing.Sender._start, pacing.Sender.run = start, run  # type: ignore[method-assign]


def queue_events(latency_ms: int, count: int) -> None:
    from django_datadog_partner.tracking import send_event

    org, _ = tenant(latency_ms)
    with transaction.atomic():
        for n in range(count):
            send_event(org, title=f"Order {n} updated", text="status: paid\ntotal: 12.50")


def drain_rate(sink: Sink, latency_ms: int, count: int) -> Drained:
    from django_datadog_partner.delivery import drain

    clear()
    queue_events(latency_ms, count)
    sink.reset()
    with counting_in_flight() as most:
        start = time.perf_counter()
        summary = drain()
        rate = count / (time.perf_counter() - start)
    assert summary.counts.get("delivered") == count, summary
    stats = sink.stats()
    # Less the connection of the ``/_stats`` call itself, opened to read these counts.
    return Drained(rate, stats["connections"] - 1, most[0], stats["max_in_flight"])


def bare_rate(count: int) -> float:
    """A bare ``requests.Session`` posting the worker's own bodies to the same sink."""
    import requests

    from django_datadog_partner import payloads
    from django_datadog_partner.models import OutboxEvent
    from django_datadog_partner.regions import get_site
    from tests.outbox_support import key_of

    _, conn = tenant(0)
    clear()
    queue_events(0, count)
    rows = list(OutboxEvent.objects.order_by("pk"))
    bodies = [payloads.encode(payloads.as_sent(r.kind, r.payload, r.pk)) for r in rows]
    url = get_site(conn.domain).api_url + "/api/v1/events"
    headers = {"DD-API-KEY": key_of(conn), "Content-Type": "application/json"}
    session = requests.Session()
    start = time.perf_counter()
    for body in bodies:
        session.post(url, data=body, headers=headers, timeout=10).raise_for_status()
    rate = len(bodies) / (time.perf_counter() - start)
    session.close()
    return rate


def run(sink: Sink, quick: bool) -> None:
    counts = QUICK if quick else FULL
    drain_rate(sink, 0, counts.loopback // 4)  # warm-up: imports, pool, sender
    bare_rate(counts.loopback // 4)
    worker, bare = [], []
    for n in range(counts.rounds):
        pair = [
            lambda: worker.append(drain_rate(sink, 0, counts.loopback).rate),
            lambda: bare.append(bare_rate(counts.loopback)),
        ]
        for step in pair if n % 2 == 0 else pair[::-1]:
            step()
    figure(
        "one worker / bare requests.Session, loopback",
        [w / b for w, b in zip(worker, bare, strict=True)],
        ">= 2.0",
        lambda r: r >= 2.0,
        context=f"worker {spread(worker)}, Session {spread(bare)} events/s",
        sink=True,
    )
    latency_sweep(sink, counts, statistics.median(worker))


def latency_sweep(sink: Sink, counts: Counts, loopback_rate: float) -> None:
    goals = {50: 0.85, 200: 0.75}
    runs: dict[int, list[Drained]] = {0: [], 50: [], 200: []}
    order = [0, 50, 200]
    for n in range(counts.rounds):
        for latency in order[n % 3 :] + order[: n % 3]:
            count = (
                counts.loopback if latency == 0 else latency_count(counts, latency, loopback_rate)
            )
            runs[latency].append(drain_rate(sink, latency, count))
    loopback = [r.rate for r in runs[0]]
    for latency, goal in goals.items():
        shares = [r.rate / base * 100 for r, base in zip(runs[latency], loopback, strict=True)]
        opened = max(r.opened for r in runs[latency])
        most = max(r.most_in_flight for r in runs[latency])
        at_sink = max(r.most_at_sink for r in runs[latency])
        share_met = statistics.median(shares) >= goal * 100
        figure(
            f"worker at {latency} ms, % of its loopback rate",
            shares,
            f">= {goal:.0%}",
            share_met and opened <= most,
            unit="%",
            context=f"{spread([r.rate for r in runs[latency]])} vs {spread(loopback)} events/s "
            f"on loopback, {latency_count(counts, latency, loopback_rate):,} rows, "
            f"<= {most} requests in flight ({at_sink} at the sink), {opened} connections "
            "opened",
            sink=True,
        )
