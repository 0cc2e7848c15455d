"""What a killed worker leaves behind: outcomes written as the answers come (not once per
batch), leases renewed while a run works, a drain when a worker starts, and a second task
when a claim comes back full."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from django_datadog_partner import tasks, tracking
from django_datadog_partner.conf import app_settings
from django_datadog_partner.delivery import kick, sending, transmit
from django_datadog_partner.delivery import run as run_module
from django_datadog_partner.delivery.run import claim, drain
from django_datadog_partner.models import OutboxEvent
from tests.outbox_support import statuses

pytestmark = pytest.mark.django_db


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs in the worker."""


def one_at_a_time(partner_settings, **more) -> None:
    partner_settings(DELIVERY_CONCURRENCY=1, **more)


@pytest.mark.parametrize("flush_every", [1, 4])
def test_a_worker_killed_mid_batch_has_written_what_was_answered_before(
    org, conn, intake, partner_settings, monkeypatch, flush_every
):
    one_at_a_time(partner_settings)
    monkeypatch.setattr(sending, "FLUSH_EVERY", flush_every)
    monkeypatch.setattr(sending, "FLUSH_AFTER", 3600.0)
    for n in range(12):
        tracking.send_event(conn, title=f"e{n}", text="x")

    def respond(arrival):
        if len(intake.arrivals) >= 10:  # the tenth request never gets its answer read
            raise Killed
        return 202

    intake.respond = respond
    with pytest.raises(Killed):
        drain()
    delivered = [pk for pk, status in statuses().items() if status == "delivered"]
    # Every answer before the last flush point is on its row; at most flush_every - 1
    # answered rows (and the one in flight) would be sent again.
    assert 9 - (flush_every - 1) <= len(delivered) <= 9
    still_leased = OutboxEvent.objects.filter(status="pending").exclude(lease_token="")
    assert still_leased.count() == 12 - len(delivered)


def test_a_batch_answered_in_full_is_written_once_per_flush_not_per_row(
    org, conn, intake, partner_settings, django_assert_max_num_queries, monkeypatch
):
    one_at_a_time(partner_settings)
    # Only the count decides here: on a loaded machine every answer can take longer than
    # FLUSH_AFTER, which would write after each one.
    monkeypatch.setattr(sending, "FLUSH_AFTER", 3600.0)
    for n in range(40):
        tracking.send_event(conn, title=f"e{n}", text="x")
    # claims (3-5 statements each, PostgreSQL's savepoints included), connections,
    # breakers, then one UPDATE per 16 answers: far fewer than one write per row (40).
    with django_assert_max_num_queries(20):
        drain()
    assert set(statuses().values()) == {"delivered"}


def test_the_lease_is_renewed_while_the_run_works(org, conn, partner_settings):
    partner_settings(LEASE_SECONDS=20)
    for n in range(3):
        tracking.send_event(conn, title=f"e{n}", text="x")
    token, rows = claim(10)
    first_until = OutboxEvent.objects.get(pk=rows[0].pk).lease_until
    assert first_until is not None
    run = transmit.Run(send_by=0.0)
    lease = sending.Lease(token, time.monotonic() - 6, run)  # claimed > LEASE / 4 ago
    lease.outstanding.update(row.pk for row in rows)
    lease.answered([rows[0].pk])  # answered, not written yet: still leased
    lease.keep()
    untils = set(OutboxEvent.objects.values_list("lease_until", flat=True))
    assert len(untils) == 1
    renewed = untils.pop()
    assert renewed is not None and renewed > first_until
    assert run.send_by > time.monotonic() + 20 - sum(app_settings.HTTP_TIMEOUT) - 1

    lease.keep()  # not due again yet (a quarter of the lease since): nothing written
    assert set(OutboxEvent.objects.values_list("lease_until", flat=True)) == {renewed}


def test_a_run_whose_rows_were_taken_over_stops_starting_requests(org, conn, partner_settings):
    tracking.send_event(conn, title="e", text="x")
    tracking.send_event(conn, title="f", text="x")
    token, rows = claim(10)
    OutboxEvent.objects.filter(pk=rows[1].pk).update(lease_token="another-run")
    run = transmit.Run(send_by=0.0)
    lease = sending.Lease(token, time.monotonic() - 60, run)
    lease.outstanding.update(row.pk for row in rows)
    lease.keep()
    assert run.too_late()  # send_by not moved: the run no longer owns its whole batch


def test_a_starting_worker_enqueues_a_drain(monkeypatch):
    enqueued = []
    monkeypatch.setattr(kick, "_enqueue", lambda tasks_, name: enqueued.extend(tasks_))
    kick.on_worker_start(sender="django_q", proc_name="Process-1")
    assert enqueued == [(kick.START_TASK, ())]


def test_the_worker_start_receiver_is_connected():
    from django_q.signals import post_spawn

    sync_receivers = post_spawn._live_receivers("django_q")[0]
    assert kick.on_worker_start in sync_receivers


def test_the_start_drain_waits_out_a_killed_workers_lease(
    org, conn, intake, partner_settings, kicks
):
    partner_settings(LEASE_SECONDS=2, HTTP_TIMEOUT=(0.2, 0.3))
    tracking.send_event(conn, title="e", text="x")
    claim(10)  # the killed worker's claim: leased for two more seconds
    started = time.monotonic()
    result = tasks.deliver_after_start()
    assert "delivered: 1" in result
    assert 1.5 < time.monotonic() - started < 5
    assert len(intake.arrivals) == 1


def test_the_start_drain_does_not_linger_without_leased_rows(org, conn, intake, kicks):
    started = time.monotonic()
    tasks.deliver_after_start()
    assert time.monotonic() - started < 2


def test_the_start_drain_stops_lingering_once_no_row_is_leased(
    org, conn, intake, partner_settings, kicks, monkeypatch
):
    """A live worker held the rows and finished them: waiting out LEASE_SECONDS would only
    hold up the cluster's shutdown (django-q2 waits for the task)."""
    from django_datadog_partner import delivery

    partner_settings(LEASE_SECONDS=30)
    answers = iter([True, True])  # leased at the start and at the first look, then not
    monkeypatch.setattr(delivery, "leased_rows_waiting", lambda: next(answers, False))
    started = time.monotonic()
    tasks.deliver_after_start()
    assert time.monotonic() - started < 5  # not 31 s


def test_a_full_claim_enqueues_one_more_task_and_a_short_one_none(
    org, conn, intake, partner_settings
):
    partner_settings(DELIVERY_BATCH_SIZE=5)
    for n in range(12):  # three claims: 5, 5, 2
        tracking.send_event(conn, title=f"e{n}", text="x")
    calls = []
    drain(on_full_claim=lambda: calls.append(1))
    assert calls == [1]
    tracking.send_event(conn, title="last", text="x")
    drain(on_full_claim=lambda: calls.append(2))
    assert calls == [1]
    assert len(intake.arrivals) == 13


def test_deliver_due_shares_a_large_backlog_with_one_more_task(
    org, conn, intake, partner_settings, kicks
):
    partner_settings(DELIVERY_BATCH_SIZE=5)
    for n in range(12):
        tracking.send_event(conn, title=f"e{n}", text="x")
    kicks.clear()
    tasks.deliver_due()
    assert kicks == [1]


def test_expired_leases_are_claimed_again(org, conn):
    tracking.send_event(conn, title="e", text="x")
    claim(10)
    assert claim(10)[1] == []
    OutboxEvent.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    assert len(claim(10)[1]) == 1


def test_a_latency_bound_run_tops_its_batch_up_under_the_same_token(
    org, conn, intake, partner_settings, monkeypatch
):
    """More rows join the batch as its last jobs start (not after its last round trip):
    one delivery, every claim to one token, every row delivered once."""
    partner_settings(DELIVERY_BATCH_SIZE=20)
    for n in range(120):
        tracking.send_event(conn, title=f"e{n}", text="x")

    def slow(arrival):
        time.sleep(0.1)  # a long round trip next to the CPU a request costs (even loaded)
        return 202

    intake.respond = slow
    claims: list[tuple[str, int]] = []
    delivers: list[str] = []
    real_claim, real_deliver = run_module.claim, run_module.deliver

    def claim_spy(limit, **kwargs):
        token, rows = real_claim(limit, **kwargs)
        claims.append((token, len(rows)))
        return token, rows

    def deliver_spy(token, *args, **kwargs):
        delivers.append(token)
        real_deliver(token, *args, **kwargs)

    monkeypatch.setattr(run_module, "claim", claim_spy)
    monkeypatch.setattr(run_module, "deliver", deliver_spy)
    monkeypatch.setitem(run_module._learned, "limit", 3)  # the last run found it latency-bound
    drain()
    assert set(statuses().values()) == {"delivered"}
    assert sorted(intake.delivered_ids()) == sorted(statuses())
    assert len(delivers) == 1
    assert len([n for _, n in claims if n]) >= 2
    assert {token for token, n in claims if n} == set(delivers)


def test_a_rate_limit_met_early_in_a_topped_up_batch_holds_the_rows_that_join_it(
    org, conn, intake, partner_settings, monkeypatch
):
    """What a batch learned (here a 429's pause of the key) is written before more rows
    join it, so they wait with the others instead of being sent into the rate limit."""
    partner_settings(DELIVERY_BATCH_SIZE=20)
    for n in range(120):
        tracking.send_event(conn, title=f"e{n}", text="x")

    def limited(arrival):
        time.sleep(0.05)
        return 429, {"X-RateLimit-Reset": "60"}, '{"errors": ["slow down"]}'

    intake.respond = limited
    monkeypatch.setitem(run_module._learned, "limit", 3)  # claims 16 x 3 rows at first
    drain()
    assert len(intake.arrivals) == 48  # the first claim's; none of the other 72
    conn.refresh_from_db()
    assert conn.paused_until is not None
    pending = OutboxEvent.objects.filter(status="pending")
    assert pending.count() == 120
    assert not pending.filter(next_attempt_at__lt=conn.paused_until).exists()


def test_a_batch_topped_up_long_after_its_start_dates_a_rate_limit_pause_from_now(
    org, conn, intake, partner_settings, monkeypatch
):
    """A batch that grows can send for minutes: what it records for rows that joined it (a
    429's pause of the key) counts from the time of the answer, not from the batch's start,
    or the pause would already be over for every other worker."""
    partner_settings(DELIVERY_BATCH_SIZE=20, LEASE_SECONDS=3600)  # the leases outlast the jump
    for n in range(120):
        tracking.send_event(conn, title=f"e{n}", text="x")
    real_now = timezone.now
    later = timedelta(0)
    monkeypatch.setattr(timezone, "now", lambda: real_now() + later)

    def respond(arrival):
        nonlocal later
        time.sleep(0.05)
        if len(intake.arrivals) <= 48:  # the first claim's: then ten minutes go by
            later = timedelta(minutes=10)
            return 202
        return 429, {"X-RateLimit-Reset": "60"}, '{"errors": ["slow down"]}'

    intake.respond = respond
    monkeypatch.setitem(run_module._learned, "limit", 3)  # claims 16 x 3 rows at first
    drain()
    assert len(intake.arrivals) > 48  # rows joined the batch and met the rate limit
    conn.refresh_from_db()
    assert conn.paused_until is not None
    assert conn.paused_until > timezone.now() + timedelta(seconds=30)
    retried = OutboxEvent.objects.filter(status="pending", attempts__gt=0)
    assert retried.exists()
    assert not retried.filter(next_attempt_at__lt=timezone.now() + timedelta(seconds=30)).exists()
