"""The requests a sender keeps in flight, made on one multiplexer by the calling thread.

Why: a thread per request in flight cost more CPU than the request (wake-ups, GIL
hand-overs), which at a long round trip capped a worker well below its loopback rate. Here
the first request of every job goes out on the multiplexer and its answer is classified on
the calling thread as it arrives; only what needs more requests after that answer (a
shrink, a split, a key's validation) goes to a thread, since it waits for them. Finished
jobs are reported on the sender's queue as thread-made ones are, so both look alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import SimpleQueue
from typing import NamedTuple

from ..client import Call
from ..exceptions import DatadogPartnerError
from ..multiplex import Exchange, Multiplexer
from . import transmit
from .transmit import Result, Run

#: Answers read (and then recorded) per look at the sockets: the others stay there, so a
#: worker killed mid-batch has read at most this many answers it had not yet written.
ANSWERS_AT_ONCE = 16


class Timed(NamedTuple):
    results: list[Result]
    wall: float  # seconds
    cpu: float  # seconds
    #: Made on the multiplexer: ``wall`` is then a lower bound of the round trip.
    multiplexed: bool = False


Finished = SimpleQueue[tuple[str, Timed | None, BaseException | None]]


@dataclass
class _Entry:
    lane: str
    job: transmit.LoopJob
    attempt: transmit.Attempt
    call: Call | None
    cpu: float  # CPU spent on it by the calling thread so far


class InFlight:
    """Jobs started on one multiplexer; ``wait`` moves them on until one finished."""

    def __init__(self, run: Run, pool: ThreadPoolExecutor, finished: Finished) -> None:
        self.run, self.pool, self.finished = run, pool, finished
        self.mux = Multiplexer()
        self._entries: dict[Exchange, _Entry] = {}

    def close(self) -> None:
        self.mux.close()

    def start(self, lane: str, job: transmit.LoopJob) -> None:
        cpu = time.thread_time()
        attempt = job.first()
        entry = _Entry(lane, job, attempt, None, 0.0)
        skipped = attempt.skipped(self.run)
        if skipped is not None:
            self._report(entry, [skipped], cpu)
            return
        try:
            entry.call = attempt.call()
        except DatadogPartnerError as exc:
            self._concluded(entry, cpu, error=exc)
            return
        self._entries[entry.call.exchange] = entry
        self.mux.start(entry.call.exchange)
        entry.cpu += time.thread_time() - cpu

    def submit(self, lane: str, job: transmit.Job) -> None:
        """Run ``job`` whole on a thread; its end wakes ``wait``."""
        self.pool.submit(reported, lane, job, self.run, self.finished, self.mux.wake)

    def wait(self) -> None:
        """Until at least one job finished (on the queue)."""
        while self.finished.empty():
            arrived, failed = self.mux.poll(1.0, most=ANSWERS_AT_ONCE)
            cpu = time.thread_time()
            for exchange in arrived:
                self._arrived(exchange, cpu)
                cpu = time.thread_time()
            for exchange, error in failed:
                entry = self._entries.pop(exchange)
                assert entry.call is not None
                self._concluded(entry, cpu, error=entry.call.failed(error))
                cpu = time.thread_time()

    def _arrived(self, exchange: Exchange, cpu: float) -> None:
        entry = self._entries[exchange]
        assert entry.call is not None
        try:
            got = entry.call.answer()
        except DatadogPartnerError as exc:
            del self._entries[exchange]
            self.mux.settle(exchange, keep=False)
            self._concluded(entry, cpu, error=exc)
            return
        if got is None:  # not whole yet
            entry.cpu += time.thread_time() - cpu
            return
        del self._entries[exchange]
        response, keep = got
        self.mux.settle(exchange, keep=keep)
        self._concluded(entry, cpu, response=response)

    def _concluded(self, entry: _Entry, cpu: float, **answer: object) -> None:
        try:
            outcome = transmit.answered(entry.job, entry.attempt, self.run, **answer)  # type: ignore[arg-type]
        except BaseException as exc:  # re-raised by the sender, as a thread's would be
            self.finished.put((entry.lane, None, exc))
            return
        if callable(outcome):
            self.submit(entry.lane, outcome)
            return
        self._report(entry, outcome, cpu)

    def _report(self, entry: _Entry, results: list[Result], cpu: float) -> None:
        """Timed by the round trip's lower bound, not by when this thread got to the answer:
        a busy thread's delay would read as a longer round trip, asking for more requests
        in flight, which make it busier still."""
        used = entry.cpu + time.thread_time() - cpu
        wall = entry.call.exchange.answered_after if entry.call is not None else 0.0
        self.finished.put((entry.lane, Timed(results, wall + used, used, True), None))


def reported(
    lane: str,
    job: transmit.Job,
    run: Run,
    finished: Finished,
    wake: Callable[[], None] | None = None,
) -> None:
    """Run ``job`` and put its timed results (or its exception) on ``finished``."""
    try:
        finished.put((lane, timed(job, run), None))
    except BaseException as exc:  # re-raised on the calling thread, as future.result() did
        finished.put((lane, None, exc))
    if wake is not None:
        wake()


def timed(job: transmit.Job, run: Run) -> Timed:
    wall, cpu = time.perf_counter(), time.thread_time()
    results = job(run)
    return Timed(results, time.perf_counter() - wall, time.thread_time() - cpu)
