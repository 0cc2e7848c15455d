"""``delivery.kick``: at most one delivery task per transaction, and per ``KICK_INTERVAL``.

``request_kick`` registers one ``on_commit`` callback per transaction (none with
``KICK_ON_COMMIT`` off, none that outlives a rollback); the callback enqueues only if this
process has not within ``KICK_INTERVAL``; the enqueue runs inside ``atomic()`` so django-q2's
ORM broker leaves the request's database connection open.
"""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection, transaction
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signing import SignedPackage

from django_datadog_partner.delivery import kick

pytestmark = pytest.mark.django_db


def registered() -> int:
    """Kicks waiting for the current transaction to commit."""
    return sum(1 for entry in connection.run_on_commit if entry[1] is kick._kick)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The kick's ``time.monotonic``, moved by the test (``clock.now``)."""
    fake = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(kick, "time", SimpleNamespace(monotonic=lambda: fake.now))
    return fake


def kick_then_roll_back() -> None:
    with transaction.atomic():
        kick.request_kick()
        raise RuntimeError("the host rolls back")


def interval(partner_settings: Any, seconds: float) -> None:
    partner_settings(KICK_INTERVAL=seconds)


# --- One callback per transaction ---------------------------------------------------------


def test_a_transaction_registers_one_kick_however_often_it_asks(
    django_capture_on_commit_callbacks: Any, kicks: list[int]
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        for _ in range(5):
            kick.request_kick()
        assert registered() == 1
    assert callbacks == [kick._kick]
    assert kicks == [1]


@pytest.mark.django_db(transaction=True)
def test_every_committed_transaction_kicks_and_autocommit_kicks_at_once(
    kicks: list[int], partner_settings: Any
) -> None:
    interval(partner_settings, 0)
    for expected in ([1], [1, 1]):
        with transaction.atomic():
            kick.request_kick()
            kick.request_kick()
            assert kicks == expected[:-1]  # not before the commit
        assert kicks == expected
    kick.request_kick()  # no transaction: Django runs the callback now
    assert kicks == [1, 1, 1]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_enqueues_nothing_and_blocks_no_later_kick(
    kicks: list[int],
) -> None:
    with pytest.raises(RuntimeError):
        kick_then_roll_back()
    assert kicks == []
    with transaction.atomic():
        kick.request_kick()
    assert kicks == [1]


@pytest.mark.django_db(transaction=True)
def test_a_kick_from_a_rolled_back_savepoint_is_requested_again_by_the_outer_block(
    kicks: list[int],
) -> None:
    with transaction.atomic():
        with pytest.raises(RuntimeError):
            kick_then_roll_back()  # a savepoint
        assert registered() == 0
        kick.request_kick()
        assert registered() == 1
    assert kicks == [1]


def test_kick_on_commit_off_registers_nothing(
    django_capture_on_commit_callbacks: Any, kicks: list[int], partner_settings: Any
) -> None:
    partner_settings(KICK_ON_COMMIT=False)
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        kick.request_kick()
        assert registered() == 0
    assert callbacks == [] and kicks == []


# --- Coalescing within KICK_INTERVAL ---------------------------------------------------------


def test_kicks_within_the_interval_enqueue_once(
    kicks: list[int], clock: SimpleNamespace, partner_settings: Any
) -> None:
    interval(partner_settings, 0.5)
    for now in (1000.0, 1000.2, 1000.49):
        clock.now = now
        kick._kick()
    assert kicks == [1]
    clock.now = 1000.5  # the interval is over
    kick._kick()
    clock.now = 1000.9
    kick._kick()
    assert kicks == [1, 1]


def test_reset_forgets_the_last_kick(kicks: list[int], clock: SimpleNamespace) -> None:
    kick._kick()
    kick._kick()
    assert kicks == [1]
    kick.reset()
    kick._kick()
    assert kicks == [1, 1]


def test_threads_of_one_process_share_the_interval(
    monkeypatch: pytest.MonkeyPatch, partner_settings: Any
) -> None:
    interval(partner_settings, 3600)
    enqueued: list[int] = []

    def slow_enqueue(count: int = 1) -> None:
        time.sleep(0.05)  # the broker's round trip: other commits arrive meanwhile
        enqueued.append(count)

    monkeypatch.setattr(kick, "enqueue_delivery", slow_enqueue)
    kick.reset()
    together = threading.Barrier(8, timeout=10)

    def commit() -> None:
        together.wait()
        kick._kick()

    threads = [threading.Thread(target=commit) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
    finally:
        for thread in threads:
            thread.join(timeout=10)
        kick.reset()
    assert enqueued == [1]


def test_a_failed_enqueue_is_logged_and_the_next_commit_tries_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, partner_settings: Any
) -> None:
    interval(partner_settings, 3600)
    calls: list[int] = []

    def broken(count: int = 1) -> None:
        calls.append(count)
        raise ConnectionError("broker down")

    monkeypatch.setattr(kick, "enqueue_delivery", broken)
    kick.reset()
    with caplog.at_level(logging.WARNING, logger="django_datadog_partner.delivery"):
        kick._kick()
        kick._kick()
    assert calls == [1, 1]
    assert caplog.text.count("Could not enqueue a Datadog delivery task; the sweeper will.") == 2
    kick.reset()


# --- The enqueue itself ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_enqueue_runs_inside_atomic_and_passes_no_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Conf, "ORM", "default")
    seen: list[tuple[tuple[Any, ...], dict[str, Any], bool]] = []

    def async_task(*args: Any, **kwargs: Any) -> None:
        seen.append((args, kwargs, connection.in_atomic_block))

    monkeypatch.setattr("django_q.tasks.async_task", async_task)
    kick.enqueue_delivery(3)
    task = ((kick.DELIVER_TASK,), {"task_name": "datadog_partner_deliver", "save": False}, True)
    assert seen == [task] * 3
    assert not connection.in_atomic_block


@pytest.mark.django_db(transaction=True)
def test_enqueueing_keeps_the_database_connection_open() -> None:
    """The ORM broker's ``close_old_connections()`` must not close the web request's
    connection (a reconnect per commit with ``CONN_MAX_AGE=0``)."""
    broker = get_broker()
    broker.purge_queue()  # Redis keeps tasks of earlier tests in this run
    connection.ensure_connection()
    before = connection.connection
    try:
        kick.enqueue_delivery(2)
        assert connection.connection is before and before is not None
        assert broker.queue_size() == 2
        queued = [SignedPackage.loads(payload) for _ in range(2) for _, payload in broker.dequeue()]
        assert [(t["func"], t["args"], t["kwargs"]) for t in queued] == [
            (kick.DELIVER_TASK, (), {})
        ] * 2
    finally:
        broker.purge_queue()
