"""``delivery.pacing``: how many requests are in flight, and which site's job goes next.

``Sender`` keeps at most ``limit`` jobs running (on the calling thread when the limit is
one) and moves the limit by Little's law from each job's wall and CPU time; ``Lanes`` hands
out one site's jobs after another, each site within its share. Timings are fed to
``_observe`` directly, so no test depends on how fast this machine is.
"""

from __future__ import annotations

import threading
import time

import pytest

from django_datadog_partner.delivery import transmit
from django_datadog_partner.delivery.pacing import Lanes, Sender
from django_datadog_partner.delivery.transmit import Job, Result, Run


class InFlight:
    """Counts the calls running at once inside ``with``; ``most`` is the peak."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.now -= 1


class FakeClock:
    """Stands in for ``Sender._clock``: each completion costs ``per_job[limit]`` seconds."""

    def __init__(self, sender: Sender, per_job: dict[int, float]) -> None:
        self.sender, self.per_job, self.now = sender, per_job, 0.0

    def __call__(self) -> float:
        return self.now

    def complete(self, wall: float, cpu: float) -> None:
        self.now += self.per_job[self.sender.limit]
        self.sender._observe(wall, cpu)


def fixed(maximum: int, limit: int) -> Sender:
    """A sender whose limit stays at ``limit`` (no Little's-law adjustments)."""
    sender = Sender(maximum)
    sender.limit = limit
    sender._observe = lambda wall, cpu: None  # type: ignore[method-assign]
    return sender


def run() -> Run:
    return Run(send_by=float("inf"))


def quick(run: Run) -> list[Result]:
    time.sleep(0.001)
    return [Result([1], transmit.DELIVERED, "http_202")]


def named(name: str) -> Job:
    def job(run: Run) -> list[Result]:
        return [Result([], transmit.DELIVERED, name)]

    return job


def failed(code: str = "http_503") -> Result:
    return Result([0], transmit.RETRY, code)


# --- Sender: in flight ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [2, 3, 5])
def test_the_sender_keeps_exactly_its_limit_in_flight(limit: int) -> None:
    running = InFlight()
    together = threading.Barrier(limit, timeout=10)  # breaks unless `limit` run at once

    def job(run: Run) -> list[Result]:
        with running:
            together.wait()
        return [Result([1], transmit.DELIVERED, "http_202")]

    work = [(lane, job) for lane in ("us", "eu", "us5", "ap1") for _ in range(limit)]
    with fixed(8, limit) as sender:  # four lanes' shares add up to more than the limit
        results = list(sender.run(work, run()))
    assert len(results) == limit * 4
    assert running.most == limit


def test_with_a_limit_of_one_jobs_run_one_at_a_time_on_the_calling_thread() -> None:
    running = InFlight()
    threads: list[str] = []

    def job(run: Run) -> list[Result]:
        with running:
            threads.append(threading.current_thread().name)
            time.sleep(0.001)
        return [Result([len(threads)], transmit.DELIVERED, "http_202")]

    with Sender(1) as sender:
        assert sender.limit == 1
        results = list(sender.run([("us", job)] * 3 + [("eu", job)] * 3, run()))
        assert sender.limit == 1  # a maximum of one is never exceeded, whatever it measures
    assert [r[0].row_ids for r in results] == [[1], [2], [3], [4], [5], [6]]
    assert set(threads) == {threading.current_thread().name}
    assert running.most == 1


def test_above_one_the_jobs_run_on_the_senders_threads() -> None:
    threads: list[str] = []

    def job(run: Run) -> list[Result]:
        threads.append(threading.current_thread().name)
        return [Result([len(threads)], transmit.DELIVERED)]

    with fixed(4, 4) as sender:
        results = list(sender.run([("site", job)] * 20, run()))
    assert sorted(r[0].row_ids[0] for r in results) == list(range(1, 21))
    assert all(name.startswith("ddp-send") for name in threads)


@pytest.mark.parametrize(("maximum", "start"), [(0, 1), (1, 1), (2, 2), (4, 4), (16, 4)])
def test_the_sender_starts_at_four_or_its_maximum(maximum: int, start: int) -> None:
    with Sender(maximum) as sender:
        assert (sender.limit, sender.maximum) == (start, max(1, maximum))


# --- Sender: the latency-bound range (Little's law) -----------------------------------------


@pytest.mark.parametrize(
    ("maximum", "wall", "cpu", "expected"),
    [
        (64, 0.0123, 0.001, 13),  # ceil(12.3)
        (64, 0.0045, 0.001, 5),  # just above the CPU-bound range
        (64, 0.020, 0.001, 20),
        (64, 0.100, 0.001, 64),  # capped at the maximum
        (8, 0.050, 0.0005, 8),
        (16, 0.010, 0.0, 16),  # no measurable CPU: as many as allowed
    ],
)
def test_a_round_trip_that_dominates_gets_wall_over_cpu_requests_in_flight(
    maximum: int, wall: float, cpu: float, expected: int
) -> None:
    with Sender(maximum) as sender:
        sender._observe(wall=wall, cpu=cpu)
        assert sender.limit == expected


def test_the_ratio_is_damped_over_recent_jobs() -> None:
    with Sender(64) as sender:
        sender._observe(wall=0.010, cpu=0.001)
        sender._observe(wall=0.060, cpu=0.001)  # one slow answer moves it a fifth of the way
        assert sender.limit == 20
        for _ in range(30):
            sender._observe(wall=0.056, cpu=0.0016)  # converges on 35
        assert sender.limit == 35


def test_the_processs_cpu_per_answer_not_the_sending_threads_sets_the_requests_in_flight():
    """Jobs that only wait (their thread spends next to no CPU) while the calling thread
    spends 2 ms on each answer: one core saturates at about 20 ms / 2 ms in flight."""

    def waits(run: Run) -> list[Result]:
        time.sleep(0.02)
        return [Result([1], transmit.DELIVERED, "http_202")]

    with Sender(256) as sender:
        for _ in sender.run([("site", waits)] * 150, run()):
            until = time.process_time() + 0.002
            while time.process_time() < until:
                pass
        assert sender.latency_bound
        assert 4 <= sender.limit <= 40  # the thread's CPU alone said the maximum, 256


def test_when_the_round_trip_stops_dominating_the_sender_measures_from_one() -> None:
    with Sender(8) as sender:
        sender._observe(wall=0.050, cpu=0.001)
        assert sender.limit == 8
        for _ in range(20):
            sender._observe(wall=0.001, cpu=0.0008)
        assert sender.limit == 1


# --- Sender: the CPU-bound range (one or two in flight, measured) ---------------------------


def test_cpu_bound_sends_measure_one_then_two_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    with Sender(8) as sender:
        clock = FakeClock(sender, {1: 0.001, 2: 0.0005, 4: 0.001})
        monkeypatch.setattr(sender, "_clock", clock)
        limits = []
        for _ in range(Sender.WINDOW * 3):
            clock.complete(wall=0.001, cpu=0.0008)
            limits.append(sender.limit)
        first_two = limits.index(2)
        assert set(limits[:first_two]) == {1}
        assert Sender.WINDOW <= first_two <= Sender.WINDOW + 2
        assert set(limits[first_two:]) == {2}  # two delivered twice as fast: kept


def test_cpu_bound_sends_keep_whichever_of_one_or_two_delivers_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Sender(8) as sender:
        clock = FakeClock(sender, {1: 0.001, 2: 0.0005, 4: 0.0005})  # two: twice the rate
        monkeypatch.setattr(sender, "_clock", clock)
        for _ in range(Sender.WINDOW * 6):
            clock.complete(wall=0.001, cpu=0.0008)
        assert sender.limit == 2
        clock.per_job = {1: 0.001, 2: 0.002}  # now the second thread only adds GIL waits
        for _ in range(Sender.WINDOW * Sender.REPROBE * 2):
            clock.complete(wall=0.001, cpu=0.0008)
        assert sender.limit == 1


def test_two_in_flight_must_beat_one_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    with Sender(8) as sender:
        clock = FakeClock(sender, {1: 0.001, 2: 0.001 / 1.03, 4: 0.001})  # two: 3% faster
        monkeypatch.setattr(sender, "_clock", clock)
        for _ in range(Sender.WINDOW * 6):
            clock.complete(wall=0.001, cpu=0.0008)
        assert sender.limit == 1


def test_the_time_between_runs_is_not_counted_against_either_choice() -> None:
    with Sender(2) as sender:
        assert sender._clock() == 0.0
        list(sender.run([("site", quick)], run()))
        busy = sender._clock()
        assert busy > 0
        time.sleep(0.02)  # the database work between batches
        assert sender._clock() == busy


# --- Lanes ------------------------------------------------------------------------------------


def take_all(lanes: Lanes, limit: int) -> list[str]:
    """Codes of the jobs ``take`` hands out until it hands out none."""
    taken = []
    while (next_job := lanes.take(limit)) is not None:
        taken.append(next_job[1](run())[0].code)
    return taken


def jobs(**counts: int) -> list[tuple[str, Job]]:
    return [(lane, named(f"{lane}{n}")) for lane, count in counts.items() for n in range(count)]


def test_lanes_take_one_job_of_each_site_in_turn() -> None:
    lanes = Lanes(jobs(us=3, eu=1, us5=2), run())
    assert take_all(lanes, 99) == ["us0", "eu0", "us50", "us1", "us51", "us2"]
    assert not lanes


def test_one_site_alone_may_take_the_whole_limit() -> None:
    lanes = Lanes(jobs(us=6), run())
    assert take_all(lanes, 4) == ["us0", "us1", "us2", "us3"]
    lanes.done("us")
    assert take_all(lanes, 4) == ["us4"]


@pytest.mark.parametrize(("limit", "each"), [(4, 2), (5, 2), (8, 4), (1, 1)])
def test_a_site_holds_half_the_limit_while_another_has_work(limit: int, each: int) -> None:
    lanes = Lanes(jobs(us=10, eu=10), run())
    taken = take_all(lanes, limit)
    assert sorted(taken) == sorted(
        [f"us{n}" for n in range(each)] + [f"eu{n}" for n in range(each)]
    )
    lanes.done("eu")
    assert take_all(lanes, limit) == [f"eu{each}"]


def test_a_site_with_requests_in_flight_still_has_work() -> None:
    lanes = Lanes(jobs(us=6, eu=1), run())
    assert take_all(lanes, 4) == ["us0", "eu0", "us1"]  # eu's one job is in flight
    lanes.done("eu")  # now us is alone
    assert take_all(lanes, 4) == ["us2", "us3"]


def test_a_failing_site_gets_one_request_until_it_answers() -> None:
    shared = run()
    shared.breakers.note("eu", 1, failed())
    lanes = Lanes(jobs(eu=6, us=6), shared)
    assert take_all(lanes, 8) == ["eu0", "us0", "us1", "us2", "us3"]
    refused = Result([0], transmit.RETRY, "http_429")  # an answer, if a refusal
    shared.breakers.note("eu", 1, refused)
    assert take_all(lanes, 8) == ["eu1", "eu2", "eu3"]


def test_a_failing_site_gets_one_request_even_alone() -> None:
    shared = run()
    shared.breakers.note("eu", 1, failed("network"))
    lanes = Lanes(jobs(eu=6), shared)
    assert take_all(lanes, 8) == ["eu0"]


# --- Sender and Lanes together: the bulkhead ---------------------------------------------------


def test_a_hanging_site_gets_at_most_half_the_threads_while_others_have_work() -> None:
    released = threading.Event()
    eu = InFlight()

    def hanging(run: Run) -> list[Result]:
        with eu:
            released.wait(timeout=10)
        return [failed("network")]

    us_done = 0
    with fixed(4, 4) as sender:
        for results in sender.run([("eu", hanging)] * 6 + [("us", quick)] * 30, run()):
            if results[0].verdict == transmit.DELIVERED:
                us_done += 1
                if us_done == 30:
                    assert eu.most == 2  # the other half kept the US jobs moving
                    released.set()
    assert us_done == 30


def test_a_site_that_failed_in_this_run_gets_one_request_at_a_time() -> None:
    eu = InFlight()

    def failing(run: Run) -> list[Result]:
        with eu:
            time.sleep(0.01)
        run.breakers.note("eu", 1, failed())
        return [failed()]

    shared = run()
    shared.breakers.note("eu", 1, failed())  # failed earlier in this run
    with fixed(8, 4) as sender:
        results = list(sender.run([("eu", failing)] * 8 + [("us", quick)] * 8, shared))
    assert len(results) == 16
    assert eu.most == 1


def test_results_are_yielded_as_each_job_finishes() -> None:
    release_slow = threading.Event()

    def slow(run: Run) -> list[Result]:
        assert release_slow.wait(timeout=10), "the fast job's result was held back"
        return [Result([], transmit.DELIVERED, "slow")]

    order: list[str] = []
    work: list[tuple[str, Job]] = [("eu", slow), ("us", named("fast"))]
    with fixed(2, 2) as sender:
        for results in sender.run(work, run()):
            order.append(results[0].code)
            release_slow.set()
    assert order == ["fast", "slow"]
