"""Per-site circuit breakers (AT-54): a failing Datadog site stops getting requests, other
sites keep theirs, and one probe after the cooldown closes it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from django_datadog_partner import delivery, outbox, tracking
from django_datadog_partner.delivery import breaker
from django_datadog_partner.models import Connection, OutboxEvent, OutboxStatus, SiteBreaker
from django_datadog_partner.testing import make_connection
from tests.outbox_support import Intake
from tests.testapp.models import Organization

pytestmark = pytest.mark.django_db

EU, US = "datadoghq.eu", "datadoghq.com"


@pytest.fixture
def breaker_settings(partner_settings):
    partner_settings(
        BREAKER_THRESHOLD=3,
        BREAKER_COOLDOWN=60,
        DELIVERY_CONCURRENCY=1,  # one request at a time: the counts below are exact
    )


def connections() -> tuple[Connection, Connection]:
    eu = make_connection(Organization.objects.create(name="eu"), domain=EU)
    us = make_connection(Organization.objects.create(name="us"), domain=US)
    return eu, us


def send(conn: Connection, count: int) -> None:
    for n in range(count):
        tracking.send_event(conn, title=f"{conn.domain} {n}", text="x")


def eu_down(arrival) -> int:
    return 503 if arrival.domain == EU else 202


def sent_to(intake: Intake, domain: str) -> int:
    return sum(arrival.domain == domain for arrival in intake.arrivals)


def open_eu_breaker(intake: Intake) -> tuple[Connection, Connection]:
    eu, us = connections()
    send(eu, 10)
    send(us, 10)
    intake.respond = eu_down
    delivery.drain()
    return eu, us


def test_a_failing_site_opens_its_breaker_and_other_sites_keep_sending(intake, breaker_settings):
    eu, us = open_eu_breaker(intake)

    assert sent_to(intake, EU) == 3  # the threshold, then nothing more in this run
    assert sent_to(intake, US) == 10
    breaker = SiteBreaker.objects.get(domain=EU)
    assert breaker.failures == 3 and breaker.open_until is not None
    assert "503" in breaker.last_error
    assert not SiteBreaker.objects.filter(domain=US, open_until__isnull=False).exists()
    rows = OutboxEvent.objects.filter(connection=eu)
    assert set(rows.values_list("status", flat=True)) == {OutboxStatus.PENDING}
    assert sorted(rows.values_list("attempts", flat=True)) == [0] * 7 + [1] * 3
    assert all(row.next_attempt_at >= breaker.open_until for row in rows)

    # Later runs, still inside the cooldown: the EU rows are not even claimed.
    intake.arrivals.clear()
    send(us, 2)
    assert str(delivery.drain()) == "delivered: 2"
    assert sent_to(intake, EU) == 0


def test_after_the_cooldown_one_probe_closes_the_breaker_and_the_backlog_drains(
    intake, breaker_settings
):
    eu, _ = open_eu_breaker(intake)
    cooldown_over(EU)
    intake.arrivals.clear()
    intake.respond = lambda arrival: 202  # EU is back

    delivery.drain()
    delivery.drain()  # rows retried in the first run wait for the next one

    assert sent_to(intake, EU) == 10
    assert OutboxEvent.objects.filter(connection=eu, status=OutboxStatus.DELIVERED).count() == 10
    breaker = SiteBreaker.objects.get(domain=EU)
    assert (breaker.failures, breaker.open_until, breaker.opened_at) == (0, None, None)


def test_a_failed_probe_sends_one_request_and_keeps_the_breaker_open(intake, breaker_settings):
    open_eu_breaker(intake)
    cooldown_over(EU)
    intake.arrivals.clear()
    before = timezone.now()

    summary = delivery.drain()

    assert sent_to(intake, EU) == 1
    assert summary.counts["breaker_open"] == 9
    breaker = SiteBreaker.objects.get(domain=EU)
    assert breaker.open_until is not None and breaker.open_until >= before + timedelta(seconds=59)
    assert breaker.failures == 4
    assert outbox.count_due() == 0


def test_only_one_run_takes_the_probe(breaker_settings):
    now = timezone.now()
    SiteBreaker.objects.create(
        domain=EU, failures=3, open_until=now - timedelta(seconds=1), failing_connections=[7]
    )

    first = breaker.SiteBreakers({EU, US}, now)
    second = breaker.SiteBreakers({EU, US}, now)

    assert first.admit(EU, 7, [1, 2, 3]) == ([1], [2, 3])  # one probe; the rest wait
    assert second.admit(EU, 7, [1, 2, 3]) == ((), [1, 2, 3])
    # A connection the breaker never saw fail sends one row, once: a probe of its own.
    assert second.admit(EU, 8, [4, 5]) == ([4], [5])
    assert second.admit(EU, 8, [6]) == ((), [6])
    assert first.held == second.held == {EU: now + timedelta(seconds=60)}


def test_any_answer_from_the_site_starts_the_count_over(intake, breaker_settings):
    eu, _ = connections()
    answers = iter([503, 503, 400, 503, 503])
    intake.respond = lambda arrival: next(answers)
    send(eu, 5)

    delivery.drain()

    assert sent_to(intake, EU) == 5  # never three failures in a row
    breaker = SiteBreaker.objects.get(domain=EU)
    assert breaker.failures == 2 and breaker.open_until is None


def test_a_run_continues_the_count_other_runs_started(intake, breaker_settings):
    eu, _ = connections()
    SiteBreaker.objects.create(domain=EU, failures=2)
    intake.respond = eu_down
    send(eu, 5)

    delivery.drain()

    assert sent_to(intake, EU) == 1  # the third failure in a row
    assert SiteBreaker.objects.get(domain=EU).open_until is not None


def test_network_errors_count_as_failures(intake, breaker_settings, mocked_http):
    import requests

    eu, _ = connections()

    def reset(arrival):
        raise requests.ConnectionError("connection reset by peer")

    intake.respond = reset
    send(eu, 5)
    delivery.drain()

    assert sent_to(intake, EU) == 3
    assert SiteBreaker.objects.get(domain=EU).open_until is not None


def test_threshold_zero_switches_breakers_off(intake, breaker_settings, partner_settings):
    partner_settings(BREAKER_THRESHOLD=0)
    eu, _ = connections()
    intake.respond = eu_down
    send(eu, 6)

    delivery.drain()

    assert sent_to(intake, EU) == 6
    assert not SiteBreaker.objects.exists()


def test_the_status_command_lists_open_breakers(intake, breaker_settings, capsys):
    open_eu_breaker(intake)
    call_command("datadog_partner_status")
    out = capsys.readouterr().out
    assert "Site breakers open" in out and f"{EU}: open until" in out


def cooldown_over(domain: str) -> None:
    """Move the breaker and its held rows to the moment the cooldown ends."""
    past = timezone.now() - timedelta(seconds=1)
    SiteBreaker.objects.filter(domain=domain).update(open_until=past)
    outbox.pending_for_site(domain).update(next_attempt_at=past)


def test_closing_a_breaker_in_the_admin_makes_its_rows_due_now(intake, breaker_settings, client):
    open_eu_breaker(intake)
    staff = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(staff)
    breaker = SiteBreaker.objects.get(domain=EU)
    listing = client.get("/admin/datadog_partner/sitebreaker/").content.decode()
    assert EU in listing and "503" in listing

    response = client.post(
        "/admin/datadog_partner/sitebreaker/",
        {"action": "close", "_selected_action": [breaker.pk]},
        follow=True,
    )

    assert "1 breaker(s) closed" in response.content.decode()
    assert SiteBreaker.objects.get(domain=EU).open_until is None
    assert outbox.count_due() == 10


def test_one_tenants_failing_org_does_not_hold_another_tenants_rows(
    datadog, django_user_model, breaker_settings
):
    """Both tenants on US1; only Mallory's organisation answers 503 (the sandbox's
    per-organisation fault, which an attacker controls for their own org there)."""
    mallory = django_user_model.objects.create(username="mallory")
    victim = django_user_model.objects.create(username="victim")
    hers, theirs = datadog.connection(mallory), datadog.connection(victim)
    datadog.set_faults(datadog.org_of(hers), intake="503")
    send(hers, 10)
    delivery.drain()
    tracking.send_event(victim, title="Victim order", text="x")
    delivery.drain()
    assert [e["title"] for e in datadog.events(datadog.org_of(theirs))] == ["Victim order"]


@dataclass
class Fault:
    site_fault: bool = True
    site_answered: bool = False
    detail: str = "503"
    code: str = "http_503"


def test_rows_waiting_when_one_tenant_trips_the_breaker_are_not_held(breaker_settings):
    hers = make_connection(Organization.objects.create(name="mallory"), domain=EU)
    theirs = make_connection(Organization.objects.create(name="victim"), domain=EU)
    send(hers, 3)
    send(theirs, 2)
    breakers = breaker.SiteBreakers({EU}, timezone.now())
    for _ in range(3):
        breakers.note(EU, hers.pk, Fault())
    breakers.save()

    assert SiteBreaker.objects.get(domain=EU).open_until is not None
    later = OutboxEvent.objects.filter(next_attempt_at__gt=timezone.now())
    assert later.filter(connection=hers).count() == 3
    assert later.filter(connection=theirs).count() == 0


def test_in_an_outage_each_connection_fails_once_then_waits(intake, breaker_settings):
    one = make_connection(Organization.objects.create(name="one"), domain=EU)
    two = make_connection(Organization.objects.create(name="two"), domain=EU)
    send(one, 10)
    intake.respond = eu_down
    delivery.drain()
    assert sent_to(intake, EU) == 3  # the threshold: the breaker opens on one's rows
    send(two, 10)
    delivery.drain()
    assert sent_to(intake, EU) == 4  # two's own probe, which fails too
    delivery.drain()
    assert sent_to(intake, EU) == 4  # both wait for the cooldown now
    assert SiteBreaker.objects.get(domain=EU).failing_connections == [one.pk, two.pk]


def test_a_batch_that_reaches_another_site_loads_that_sites_breaker_once(
    breaker_settings, django_assert_num_queries
):
    """A batch topped up with rows of a site it had not sent to yet holds them as that
    site's open breaker says, and a site already watched costs no more queries."""
    now = timezone.now()
    SiteBreaker.objects.create(domain=EU, failures=3, open_until=now + timedelta(seconds=30))
    breakers = breaker.SiteBreakers({US}, now)
    assert breakers.admit(EU, 7, [1, 2]) == ([1, 2], ())  # not watched: not known to be open
    breakers.watch({US, EU})
    assert breakers.held == {EU: now + timedelta(seconds=30)}
    assert breakers.admit(EU, 8, [3, 4]) == ([3], [4])
    with django_assert_num_queries(0):
        breakers.watch({US, EU})


def test_a_grown_batch_sees_a_breaker_whose_cooldown_ended_as_the_database_says(breaker_settings):
    """A batch that grows past a site's cooldown looks at that site's breaker again: closed
    by another run meanwhile, its rows are sent, not held until a time already past."""
    now = timezone.now()
    SiteBreaker.objects.create(
        domain=EU, failures=3, open_until=now + timedelta(seconds=30), failing_connections=[7]
    )
    breakers = breaker.SiteBreakers({EU}, now)
    assert breakers.admit(EU, 7, [1, 2]) == ((), [1, 2])  # open: connection 7 failed there
    breaker.close(EU, now)  # another run's probe was answered
    breakers.now = now + timedelta(seconds=90)  # the batch grew past the cooldown
    breakers.watch({EU})
    assert breakers.held == {}
    assert breakers.admit(EU, 7, [3, 4]) == ([3, 4], ())
    assert not breakers.tripped(EU, 7)


def test_a_grown_batch_takes_the_probe_of_a_breaker_whose_cooldown_ended(breaker_settings):
    now = timezone.now()
    SiteBreaker.objects.create(
        domain=EU, failures=3, open_until=now + timedelta(seconds=30), failing_connections=[7]
    )
    breakers = breaker.SiteBreakers({EU}, now)
    breakers.now = now + timedelta(seconds=90)  # the cooldown is over: one probe
    breakers.watch({EU})
    assert breakers.held == {EU: breakers.now + timedelta(seconds=60)}
    assert breakers.admit(EU, 7, [3, 4]) == ([3], [4])
