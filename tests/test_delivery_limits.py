"""Rate limits (429 pauses the API key everywhere), backoff with full jitter, and tenant
isolation in a randomized multi-owner run."""

from __future__ import annotations

import logging
import random
import statistics
from collections import Counter
from datetime import timedelta
from email.utils import format_datetime

import pytest
from django.utils import timezone

from django_datadog_partner import delivery, outbox, tracking
from django_datadog_partner.client import rate_limit_wait
from django_datadog_partner.delivery import outcomes
from django_datadog_partner.models import Alarm, Connection, OutboxEvent
from django_datadog_partner.testing import make_connection
from tests.outbox_support import key_of
from tests.testapp.models import Order, Organization, Workspace

pytestmark = pytest.mark.django_db


def test_429_pauses_every_connection_with_that_key_and_no_other(intake):
    shared = "ab" * 16
    first, second, other = (Organization.objects.create(name=n) for n in ("a", "b", "c"))
    a = make_connection(first, api_key=shared)
    b = make_connection(second, api_key=shared)  # the same Datadog org connected by two owners
    c = make_connection(other)
    intake.respond = lambda arrival: (
        (429, {"X-RateLimit-Reset": "37", "X-RateLimit-Limit": "10"}, '{"errors": ["slow"]}')
        if arrival.api_key == shared
        else 202
    )
    tracking.send_event(a, title="a", text="x")
    delivery.drain()
    before = timezone.now()
    for conn in (a, b, c):
        conn.refresh_from_db()
    assert a.paused_until == b.paused_until and c.paused_until is None
    assert a.paused_until is not None
    assert timedelta(seconds=35) < a.paused_until - before <= timedelta(seconds=37)
    row = OutboxEvent.objects.get()
    assert row.next_attempt_at >= a.paused_until and row.last_error_code == "http_429"

    # Another worker, now: b's rows wait for the pause without a request; c's go out.
    intake.arrivals.clear()
    tracking.send_event(b, title="b", text="x")
    tracking.send_event(c, title="c", text="x")
    summary = delivery.drain()
    assert str(summary) == "delivered: 1, paused: 1"
    assert [arrival.api_key for arrival in intake.arrivals] == [key_of(c)]
    paused = OutboxEvent.objects.get(connection=b)
    assert paused.next_attempt_at == b.paused_until and paused.attempts == 0


RATE_LIMITED = {
    "X-RateLimit-Name": "events_submission",
    "X-RateLimit-Limit": "10",
    "X-RateLimit-Period": "60",
    "X-RateLimit-Reset": "5",
}


def test_the_rate_limits_name_is_kept_on_the_row_and_in_the_log(intake, caplog):
    conn = make_connection(Organization.objects.create(name="a"))
    intake.respond = lambda arrival: (429, RATE_LIMITED, '{"errors": ["slow down"]}')
    tracking.send_event(conn, title="t", text="x")
    with caplog.at_level(logging.WARNING, logger="django_datadog_partner.delivery"):
        delivery.drain()
    row = OutboxEvent.objects.get()
    named = "(rate limit events_submission: 10 per 60 s)"
    assert row.last_error == f"HTTP 429 from api.datadoghq.com/api/v1/events: slow down {named}"
    assert f"Datadog rate-limited connection {conn.pk}" in caplog.text and named in caplog.text


def test_an_alarm_quotes_the_rate_limits_name(intake):
    make_connection(Organization.objects.create(name="a"))
    intake.respond = lambda arrival: (404, {"X-RateLimit-Name": "logs_intake"}, "{}")
    tracking.send_log(Organization.objects.get(), "x")
    delivery.drain()
    assert "(rate limit logs_intake)" in Alarm.objects.get(code="intake_http_404").message


def test_a_pause_pushes_back_rows_already_due(intake):
    owner = Organization.objects.create(name="a")
    conn = make_connection(owner)
    tracking.send_event(conn, title="waiting", text="x")
    until = timezone.now() + timedelta(seconds=60)
    outcomes.pause_key(conn.api_key_fingerprint, conn.pk, until)
    assert outbox.count_due() == 0
    assert OutboxEvent.objects.get().next_attempt_at == until


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-RateLimit-Reset": "37"}, 37),
        ({"Retry-After": "12"}, 12),
        ({"Retry-After": "5", "X-RateLimit-Reset": "9"}, 9),
        ({"X-RateLimit-Reset": "0"}, 1),
        ({"X-RateLimit-Reset": "-40"}, 1),
        ({"X-RateLimit-Reset": "999999"}, 3600),
        ({"X-RateLimit-Reset": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
    ],
)
def test_rate_limit_wait_parsing_and_clamping(headers, expected):
    assert rate_limit_wait(headers) == expected


def test_retry_after_as_an_http_date():
    when = format_datetime(timezone.now() + timedelta(seconds=90), usegmt=True)
    wait = rate_limit_wait({"Retry-After": when})
    assert wait is not None and 85 <= wait <= 90


def test_backoff_is_capped_exponential_with_full_jitter(partner_settings):
    partner_settings(BACKOFF_BASE=2, BACKOFF_CAP=900)
    rng = random.Random(1234)
    for attempts, ceiling in [(1, 2), (2, 4), (5, 32), (9, 512), (10, 900), (30, 900)]:
        delays = [outcomes.backoff_delay(attempts, rng) for _ in range(2000)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > 0.95 * ceiling and min(delays) < 0.05 * ceiling  # the full range
        assert abs(statistics.mean(delays) - ceiling / 2) < 0.05 * ceiling


def test_rows_failing_together_spread_out(partner_settings):
    """AT-50: 1,000 rows failing at the same instant do not come back in the same second."""
    partner_settings(BACKOFF_BASE=2, BACKOFF_CAP=900)
    rng = random.Random(7)
    now = timezone.now()
    for attempts, window in ((6, 64), (12, 900)):
        # retry times in whole seconds after the common failure
        seconds = Counter(int(outcomes.backoff_delay(attempts, rng)) for _ in range(1000))
        fair_share = 1000 / window
        assert max(seconds.values()) <= 2 * fair_share + 5, seconds.most_common(3)
        assert len(seconds) >= 0.6 * window
    retried = [outcomes.retry_at(10, now, None) for _ in range(1000)]
    assert len({when.replace(microsecond=0) for when in retried}) > 500


def test_tenant_isolation_randomized(intake):
    """AT-57: every request's site and key are those of the row's own connection."""
    rng = random.Random(20261129)
    domains = ["datadoghq.com", "datadoghq.eu", "us5.datadoghq.com"]
    owners: list = [Organization.objects.create(name=f"org{n}") for n in range(6)]
    owners += [Workspace.objects.create(name=f"ws{n}") for n in range(2)]
    for owner in owners[:-1]:  # the last owner never connected
        for domain in rng.sample(domains, rng.choice([1, 1, 2])):
            make_connection(owner, domain=domain)
    for _ in range(300):
        owner = rng.choice(owners)
        pick = rng.random()
        if isinstance(owner, Organization) and pick < 0.4:
            Order.objects.create(organization=owner, number=str(rng.randrange(10**6)))
        elif pick < 0.7:
            tracking.send_event(owner, title="t", text="x")
        elif pick < 0.85:
            tracking.send_metric(owner, "m.x", rng.random())
        else:
            tracking.send_log(owner, "l")
    delivery.drain()

    connections = {c.pk: c for c in Connection.objects.all()}
    by_metric_key: Counter[str] = Counter()
    for arrival in intake.arrivals:
        for outbox_id in arrival.outbox_ids():
            row = OutboxEvent.objects.get(pk=outbox_id)
            conn = connections[row.connection_id or 0]
            assert (arrival.domain, arrival.api_key) == (conn.domain, key_of(conn))
            assert conn.owner_object_id == row.owner_object_id
        if arrival.kind == "series":
            by_metric_key[arrival.api_key] += len(arrival.items())
    rows = OutboxEvent.objects.all()
    delivered = Counter(rows.values_list("status", flat=True))
    assert set(delivered) <= {"delivered", "no_connection"}
    sent_ids = sorted(i for a in intake.arrivals for i in a.outbox_ids())
    assert sent_ids == sorted(
        rows.filter(status="delivered").exclude(kind="metric").values_list("pk", flat=True)
    )
    for conn in connections.values():
        metrics = rows.filter(connection=conn, kind="metric", status="delivered").count()
        assert by_metric_key[key_of(conn)] == metrics
    unconnected = owners[-1]
    assert set(
        rows.filter(owner_object_id=str(unconnected.pk)).values_list("status", flat=True)
    ) <= {"no_connection"}
