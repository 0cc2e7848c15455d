"""Pacing: how many requests a delivery run keeps in flight: as many as the round trip needs.

Little's law: to keep one CPU busy, in flight = wall time / CPU time of a request. Each job
measures its wall time and its thread's CPU (``time.thread_time``); the CPU counted is the
larger of that and the process's CPU per completion over the last ``CPU_WINDOW`` answers
(``time.process_time``: the calling thread's claims and writes, and the GIL's hand-overs,
are a request's cost too; the sending thread's own share alone overstated the requests
needed about fivefold, and every extra thread costs wake-ups and a connection). While half
the damped ratio is three or more (the round trip dominates: a distant Datadog), the ratio
itself decides. Below that the work is CPU-bound
(a loopback sink), where an extra thread helps only if another core is free; there the
sender measures the throughput of one and of two requests in flight and keeps the better,
measuring again now and then. With one, jobs run on the calling thread.

While latency-bound, the first request of each job goes out on one multiplexer driven by
the calling thread (``inflight``; threads cost more CPU in wake-ups than the requests
themselves), and only what an answer calls for next runs on a thread. There a request's
wall is a lower bound of its round trip (the thread only sees an answer when it looks), so
the round trip is the median of the recent ones, the CPU is measured over a round trip's
answers, the ratio damped over ``RATIO_ANSWERS`` answers, and the limit grows by at most
``GROWTH`` per answer: connections open no faster than requests can use them. Once every
job has started, the run is asked for more (``more``): the next claim's jobs start during
the last round trip, not after it. While ``requests`` is mocked every job runs on the
sender's threads.

Jobs come in lanes, one per Datadog site, taken round-robin; while other sites have work,
one site holds at most half the requests in flight, and a site that failed in this run
without answering since holds one (a bulkhead: a site that hangs until the timeout cannot
take every thread before its breaker opens).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue

from .. import transport
from ..exceptions import OutOfDescriptorsError
from .inflight import Finished, InFlight, reported, timed
from .transmit import LOOP_JOBS, Job, Result, Run


class Sender:
    START = 4
    DAMPING = 0.5
    WINDOW = 48  # completions per throughput sample in the CPU-bound range
    REPROBE = 16  # samples before both choices are measured again
    CPU_WINDOW = 32  # completions per measure of the process's CPU per completion
    WALLS = 64  # recent answers whose median wall is the round trip (multiplexer)
    RATIO_ANSWERS = 16  # answers over which the damped ratio moves (multiplexer)
    GROWTH = 2  # most the limit grows per answer (multiplexer): tripled per round trip

    def __init__(self, maximum: int, start: int | None = None) -> None:
        """``start``: the limit to begin with (a previous run's: the round trip of one
        worker changes little between tasks), else ``START``."""
        self.maximum = max(1, maximum)
        self.limit = min(start or self.START, self.maximum)
        self._latency_bound = start is not None and self.limit > 2
        self._ratio: float | None = None
        self._rates: dict[int, float] = {}
        self._samples = 0
        self._window: tuple[float, int] | None = None  # (busy clock at start, completions)
        self._busy = 0.0
        self._running_since: float | None = None
        #: Results already finished and about to be yielded (0: the caller would wait).
        self.finished_waiting = 0
        self._process_cpu = 0.0  # the process's CPU per request, as last measured
        self._starts = 0  # jobs started (on a thread or the multiplexer), ever
        self._measured = False  # whether a whole window measured it
        self._pool = ThreadPoolExecutor(max_workers=self.maximum, thread_name_prefix="ddp-send")

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)

    def run(
        self,
        jobs: Iterable[tuple[str, Job]],
        run: Run,
        more: Callable[[], Iterable[tuple[str, Job]]] | None = None,
    ) -> Iterator[list[Result]]:
        """Results of each (lane, job) as it finishes (order not kept). While latency-bound,
        once every job has started, ``more()`` is asked for further jobs (until it has none
        or the run is too late to start any): they start as the last ones' answers come."""
        self._running_since = time.perf_counter()
        try:
            yield from self._run(Lanes(jobs, run), run, more)
        finally:
            self._busy = self._clock()
            self._running_since = None

    def _run(
        self, lanes: Lanes, run: Run, more: Callable[[], Iterable[tuple[str, Job]]] | None
    ) -> Iterator[list[Result]]:
        # Finished jobs come back through one queue: O(1) per answer, where waiting on
        # every future in flight cost O(in flight) per answer (a core's worth at 50 ms).
        finished: Finished = SimpleQueue()
        loop = self._multiplexed(run, finished)
        active = 0
        # (process CPU at its start, completions since, starts before it)
        window = (time.process_time(), 0, self._starts)
        walls: deque[float] = deque(maxlen=self.WALLS)
        try:
            while lanes or active:
                if not active and self.limit == 1:  # no thread to hand over to
                    taken = lanes.take(1)
                    assert taken is not None  # nothing in flight: every lane is below its share
                    lane, job = taken
                    done_inline = timed(job, run)
                    results, wall, cpu = done_inline.results, done_inline.wall, done_inline.cpu
                    lanes.done(lane)
                    self._observe(wall, cpu)
                    self.finished_waiting = 0
                    yield results
                    continue
                while active < self.limit and (taken := lanes.take(self.limit)) is not None:
                    self._start(loop, *taken, run, finished)
                    active += 1
                    self._starts += 1
                if not lanes and more is not None and self._latency_bound:
                    # Every job started: the next ones are claimed now, while these are in
                    # flight (the answers come a round trip later, in a wave). The claim's
                    # CPU is left out of the CPU per completion: a few dozen microseconds
                    # a row, it would count against the few answers of one window.
                    cpu = time.process_time()
                    extra = list(more()) if not run.too_late() else []
                    window = (window[0] + time.process_time() - cpu, *window[1:])
                    lanes.extend(extra)
                    more = more if extra else None
                    continue
                if loop is not None:
                    loop.wait()
                done = [finished.get()]
                while not finished.empty():
                    done.append(finished.get_nowait())
                for left, (lane, result, error) in enumerate(done, start=1 - len(done)):
                    lanes.done(lane)
                    active -= 1
                    if error is not None:
                        raise error
                    assert result is not None
                    results, wall, cpu = result.results, result.wall, result.cpu
                    if not result.multiplexed:
                        window = self._measure_process(window, self.CPU_WINDOW)
                        self._observe(wall, max(cpu, self._process_cpu))
                    else:
                        # Hundreds of answers per round trip, in bursts: the CPU is measured
                        # over a round trip's answers, not over the last few; the limit
                        # grows by two per answer at most (tripled per round trip),
                        # so connections open no faster than requests can use them.
                        # A request's wall is a lower bound (the last look that found no
                        # answer yet): low while the thread was busy elsewhere, high while
                        # the site queues; the median of the recent ones is the round trip.
                        window = self._measure_process(window, max(self.CPU_WINDOW, self.limit))
                        walls.append(wall)
                        before = self.limit
                        weight = 1 / max(5, min(self.limit, self.RATIO_ANSWERS))
                        self._observe_damped(
                            statistics.median(walls), max(cpu, self._process_cpu), weight
                        )
                        self.limit = min(self.limit, before + self.GROWTH)
                    self.finished_waiting = -left
                    yield results
        finally:
            if loop is not None:
                loop.close()

    def _multiplexed(self, run: Run, finished: Finished) -> InFlight | None:
        """The multiplexer's loop, or None: every request then goes to a thread. So it
        goes while ``responses`` patches the transport, and when the process has no
        descriptor for a multiplexer (each request finds none either and is held, not
        failed: ``no_descriptors``)."""
        if transport.requests_patched():
            return None
        try:
            return InFlight(run, self._pool, finished)
        except OutOfDescriptorsError:
            return None

    def _start(
        self, loop: InFlight | None, lane: str, job: Job, run: Run, finished: Finished
    ) -> None:
        """The job's first request on the multiplexer when it can take it and the round
        trip dominates, else on a thread (CPU-bound, one or two in flight: as measured)."""
        if loop is None:
            self._pool.submit(reported, lane, job, run, finished)
        elif isinstance(job, LOOP_JOBS) and self._latency_bound:
            loop.start(lane, job)
        else:
            loop.submit(lane, job)

    def _measure_process(self, window: tuple[float, int, int], size: int) -> tuple[float, int, int]:
        """The process's CPU per request over the last ``size`` completions. A request is
        started once and answered once, and while the limit grows more start than end:
        the CPU is divided by the mean of the two counts, or the starts made for the
        growth would be charged to the few answers and slow it down."""
        started, completions, starts = window[0], window[1] + 1, window[2]
        requests = (completions + self._starts - starts) / 2
        if completions < size:
            if not self._measured:  # until a window is whole, the average so far
                self._process_cpu = (time.process_time() - started) / max(requests, 1)
            return started, completions, starts
        self._measured = True
        now = time.process_time()
        self._process_cpu = (now - started) / max(requests, 1)
        return now, 0, self._starts

    @property
    def latency_bound(self) -> bool:
        """Whether the round trip, not the CPU, decides how many requests are in flight
        (as last measured, or as the run this one started from measured)."""
        return self._latency_bound

    def _clock(self) -> float:
        """Seconds spent inside ``run()``: the database work between batches is not the
        sender's and must not count against either choice."""
        if self._running_since is None:
            return self._busy
        return self._busy + time.perf_counter() - self._running_since

    def _observe(self, wall: float, cpu: float) -> None:
        self._observe_damped(wall, cpu, 0.2)

    def _observe_damped(self, wall: float, cpu: float, weight: float) -> None:
        """Move the limit by one answer's ``wall`` and ``cpu``, weighing it ``weight``."""
        ratio = wall / max(cpu, 1e-5)
        self._ratio = ratio if self._ratio is None else (1 - weight) * self._ratio + weight * ratio
        self._latency_bound = math.ceil(self.DAMPING * self._ratio) >= 3
        if self._latency_bound or self.maximum == 1:
            self.limit = max(1, min(self.maximum, math.ceil(self._ratio)))
            self._rates.clear()
            self._window = None
            return
        self._sample()

    def _sample(self) -> None:
        if self.limit > 2:  # just came from the latency-bound range: start measuring
            self.limit, self._window = 1, None
            return
        if self._window is None:
            self._window = (self._clock(), 0)
            return
        started, completions = self._window[0], self._window[1] + 1
        if completions < self.WINDOW:
            self._window = (started, completions)
            return
        now = self._clock()
        self._rates[self.limit] = completions / max(now - started, 1e-9)
        self._window = (now, 0)
        self._samples += 1
        if self._samples % self.REPROBE == 0:
            self._rates = {self.limit: self._rates[self.limit]}
        untried = [n for n in (1, 2) if n not in self._rates]
        # Two threads must beat one clearly: otherwise they only add GIL hand-overs.
        self.limit = untried[0] if untried else max(self._rates, key=self._score)

    def _score(self, limit: int) -> float:
        return self._rates[limit] * (1.05 if limit == 1 else 1.0)


class Lanes:
    """Pending jobs by lane, handed out round-robin, each lane within its share."""

    def __init__(self, jobs: Iterable[tuple[str, Job]], run: Run) -> None:
        self._run = run
        self._pending: dict[str, deque[Job]] = {}
        self._busy: Counter[str] = Counter()
        self.extend(jobs)

    def extend(self, jobs: Iterable[tuple[str, Job]]) -> None:
        for lane, job in jobs:
            self._pending.setdefault(lane, deque()).append(job)

    def __bool__(self) -> bool:
        return bool(self._pending)

    def take(self, limit: int) -> tuple[str, Job] | None:
        """The next job of a lane below its share of ``limit`` in flight (all of it when no
        other lane has work, half otherwise, one while the site is failing); None when
        every lane with work is at its share, which needs a request in flight."""
        working = set(self._pending).union(+self._busy)
        share = limit if len(working) <= 1 else max(1, limit // 2)
        for lane in self._pending:
            if self._busy[lane] < (1 if self._run.breakers.failing(lane) else share):
                queue = self._pending.pop(lane)  # back in at the end: round-robin
                job = queue.popleft()
                if queue:
                    self._pending[lane] = queue
                self._busy[lane] += 1
                return lane, job
        return None

    def done(self, lane: str) -> None:
        self._busy[lane] -= 1
