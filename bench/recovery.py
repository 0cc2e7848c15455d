"""Recovery: how long after a worker is back until the last committed row arrives, and
how many rows arrive twice, after (a) SIGKILL of every cluster process mid-drain and
(b) the broker losing its queue (the queue's keys deleted while the kicks waited in it).

(a) A committed backlog drains at 50 ms round trip (many requests in flight) until a
quarter has arrived; then the whole cluster is frozen (SIGSTOP), what its sockets had
not read is counted, it gets SIGKILL and a new one starts. A row whose request reached the
sink but whose outcome was not recorded is sent again: the goal is no more duplicates than
requests were in flight at the kill (sent, and their answer not read by the worker).
(b) The saves run with no cluster up, so their kicks wait in the broker; the queue is
deleted, then a cluster starts: only the sweeper can find those rows.
The wait is capped (``cap``); a recovery slower than that is reported as "> cap".
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench import clusters
from bench.figures import figure, fmt, text_figure
from bench.sink import RESPONSE
from bench.sinks import Sink
from bench.tenants import clear, save_orders

LATENCY = 50
#: Seconds the frozen workers' sockets are left before the look: the sink answers what it
#: held meanwhile (after LATENCY), so no answer is written while the queues are read.
SETTLE = 0.3


@dataclass(frozen=True)
class Counts:
    rows: int
    cap: float  # seconds to wait after the worker is back


QUICK = Counts(rows=600, cap=35.0)
FULL = Counts(rows=5000, cap=300.0)


@dataclass
class Outcome:
    seconds: float | None  # None: not all rows arrived within the cap
    missing: int
    duplicates: int
    in_flight: int  # requests in flight at the kill (0 for a broker loss)
    causes: str = ""  # where each duplicate's first copy stood at the kill


def after_kill(sink: Sink, counts: Counts) -> Outcome:
    clear()
    clusters.reset_task_log()
    save_orders(LATENCY, counts.rows)
    sink.reset(trace=True)
    first, _ = clusters.start()
    try:
        deadline = time.monotonic() + 120
        while sink.stats()["unique"] < counts.rows // 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        killed_at = freeze(first)
        time.sleep(SETTLE)
        unread, looked_at = unread_answers(sink)
    finally:
        for cluster in first:
            cluster.kill()
    recorded = _recorded()
    relaunched_at = time.time()
    outcome = _recover(sink, counts, 0)
    trace = sink.trace()
    # Answers written after the signal (to requests in flight at the sink) wait unread too;
    # a worker that read some of them before it stopped makes this a lower bound.
    unread = max(0, unread - answered_between(trace, killed_at, looked_at))
    outcome.in_flight = in_flight_at(trace, killed_at, relaunched_at) + unread
    outcome.causes = causes(trace, killed_at, recorded, unread)
    return outcome


def freeze(group: list[clusters.QCluster]) -> float:
    """SIGSTOP every process of the clusters (the SIGKILL follows): once stopped they
    read, send and write nothing, as if killed, while their sockets stay open for a look
    at what they had not read. Returns the moment the signal was sent (on a loaded box,
    seeing every thread stopped takes longer than the workers take to stop)."""
    processes = _members({cluster.process.pid for cluster in group})
    sent_at = time.time()
    for cluster in group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cluster.process.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while not _stopped(processes) and time.monotonic() < deadline:
        time.sleep(0.0005)
    return sent_at


def _members(groups: set[int]) -> list[Path]:
    """The /proc directories of the processes in the process ``groups`` (a stopped group
    starts no new process, so the list taken before the stop stays whole)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) in groups:
                found.append(stat.parent)
    return found


def _stopped(processes: list[Path]) -> bool:
    """Whether every thread of ``processes`` is stopped (or gone)."""
    for process in processes:
        for stat in process.glob("task/[0-9]*/stat"):
            with contextlib.suppress(OSError):
                # After the command's closing parenthesis: the state (T: stopped, Z/X: dead).
                if stat.read_text().rsplit(")", 1)[1].split()[0] not in "TtZX":
                    return False
    return True


def unread_answers(sink: Sink) -> tuple[int, float]:
    """Answers the sink had written to the workers' connections that the workers had not
    read (their sockets' receive queues in ``/proc/net/tcp``; every answer of the sink is
    ``RESPONSE``), and when that was looked at. Those requests are in flight for the
    worker: its answer is on the way back, as on the wire of a real round trip."""
    port = f"{urlsplit(sink.url).port:04X}"
    queued = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2].endswith(f":{port}") and fields[3] == "01":  # to the sink, established
            queued += int(fields[4].split(":")[1], 16)
    return queued // len(RESPONSE), time.time()


def answered_between(trace: Trace, start: float, end: float) -> int:
    return sum(
        1
        for copies in trace.values()
        for _, answered in copies
        if answered is not None and start < answered <= end
    )


def _recorded() -> set[int]:
    """Ids of the rows whose outcome is written (no longer pending)."""
    from django_datadog_partner.models import OutboxEvent, OutboxStatus

    finished = OutboxEvent.objects.exclude(status=OutboxStatus.PENDING)
    return set(finished.values_list("pk", flat=True))


Trace = dict[int, list[tuple[float, float | None]]]


def in_flight_at(trace: Trace, killed_at: float, relaunched_at: float) -> int:
    """Requests sent and not answered at ``killed_at``: the ones the sink had received and
    not answered, and the ones it read only later (sent by the killed workers: nothing
    else ran until ``relaunched_at``). One row each: the bench's rows are events, one per
    request."""
    return sum(
        1
        for copies in trace.values()
        for arrived, answered in copies
        if arrived < relaunched_at and (answered is None or answered > killed_at)
    )


def causes(trace: Trace, killed_at: float, recorded: set[int], unread: int) -> str:
    """Where the first copy of each row that arrived twice stood at the kill."""
    found: Counter[str] = Counter()
    lags: list[float] = []
    for row, copies in trace.items():
        if len(copies) < 2:
            continue
        (arrived, answered), (again, _) = sorted(copies, key=lambda c: c[0])[:2]
        if again <= killed_at:
            found["sent twice before the kill"] += 1
        elif row in recorded:
            found["recorded, sent again"] += 1
        elif arrived > killed_at:
            found["in flight, read by the sink after the kill"] += 1
        elif answered is None or answered > killed_at:
            found["in flight at the sink"] += 1
        else:
            found["answered, not recorded"] += 1
            lags.append(killed_at - answered)
    parts = [f"{n} {cause}" for cause, n in found.most_common()]
    if lags:
        parts.append(
            f"of the answered, {unread} unread by the workers at the kill, the rest read and "
            f"not written yet; answered {fmt(1000 * min(lags))}..{fmt(1000 * max(lags))} ms "
            f"(median {fmt(1000 * statistics.median(lags))} ms) before the kill"
        )
    return "; ".join(parts)


def after_broker_loss(sink: Sink, counts: Counts) -> Outcome:
    from django_q.brokers import get_broker

    clear()
    clusters.reset_task_log()
    save_orders(LATENCY, counts.rows)
    broker = get_broker()
    queued = broker.queue_size()
    broker.delete_queue()
    assert broker.queue_size() == 0, "the queue survived its deletion"
    sink.reset()
    outcome = _recover(sink, counts, 0)
    outcome.in_flight = -queued  # reported as the tasks lost with the queue
    return outcome


def _recover(sink: Sink, counts: Counts, in_flight: int) -> Outcome:
    started, back = clusters.start()
    try:
        arrived = clusters.wait_for(sink, counts.rows, timeout=counts.cap)
    finally:
        clusters.stop(started)
    stats = arrived.stats
    seconds = (stats["last_at"] - back) if arrived.complete and stats["last_at"] else None
    return Outcome(seconds, counts.rows - stats["unique"], stats["duplicates"], in_flight)


def run(label: str, sink: Sink, quick: bool) -> None:
    counts = QUICK if quick else FULL
    where = f"{label}, {LATENCY} ms, {counts.rows:,} rows"
    killed = after_kill(sink, counts)
    _report(
        f"recovery after SIGKILL of every worker ({where})",
        killed,
        counts,
        f"killed with {killed.in_flight} requests in flight",
    )
    _duplicates(
        f"recovery after SIGKILL duplicates ({where})",
        killed,
        killed.in_flight,
        f"<= {killed.in_flight} (requests in flight at the kill)",
        killed.causes,
    )
    _beyond_in_flight(where, killed)
    lost = after_broker_loss(sink, counts)
    _report(
        f"recovery after broker loss ({where})",
        lost,
        counts,
        f"{-lost.in_flight} queued tasks deleted with the queue",
    )
    _duplicates(f"recovery after broker loss duplicates ({where})", lost, 0, "0")


def _beyond_in_flight(where: str, killed: Outcome) -> None:
    """The duplicates that were not in flight: answers a worker had read and not yet
    written when it was killed. A worker reads at most ``ANSWERS_AT_ONCE`` answers before
    it writes their outcomes, so this is at most that many per worker (whatever the
    moment of the kill: only a kill between two groups of answers leaves none)."""
    from django.conf import settings

    from django_datadog_partner.delivery.inflight import ANSWERS_AT_ONCE

    if killed.seconds is None:
        return
    bound = ANSWERS_AT_ONCE * settings.Q_CLUSTER["workers"]
    beyond = max(0, killed.duplicates - killed.in_flight)
    figure(
        f"recovery after SIGKILL duplicates not in flight ({where})",
        [beyond],
        f"<= {bound} ({ANSWERS_AT_ONCE} read and not yet written per worker, by design)",
        beyond <= bound,
    )


def _report(name: str, outcome: Outcome, counts: Counts, context: str) -> None:
    if outcome.seconds is None:
        text_figure(
            name,
            f"> {fmt(counts.cap)} s",
            "<= 30 s",
            False,
            f"gave up waiting: {outcome.missing:,} rows not delivered yet, {context}",
        )
    else:
        figure(
            name,
            [outcome.seconds],
            "<= 30 s",
            outcome.seconds <= 30,
            unit=" s",
            context=context,
            sink=True,
        )


def _duplicates(name: str, outcome: Outcome, allowed: int, goal: str, context: str = "") -> None:
    """Rows still undelivered at the cap may yet arrive twice: then there is no count."""
    if outcome.seconds is None:
        text_figure(
            name,
            "not known",
            goal,
            False,
            f"{outcome.duplicates:,} so far, {outcome.missing:,} rows not delivered yet",
        )
    else:
        figure(
            name,
            [outcome.duplicates],
            goal,
            outcome.duplicates <= allowed,
            context=context,
            sink=True,
        )
