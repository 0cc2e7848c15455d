"""Uninstalls noticed within the hour while a connection is sending (time simulated).

Intake keeps accepting the API key after an uninstall, so only the token endpoint can tell.
These tests run every schedule the app installs at its cadence on a simulated clock, with
the connect flow, the delivery and the health checks all real against the fake Datadog.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from django.utils.module_loading import import_string

from django_datadog_partner import delivery, tasks, tracking
from django_datadog_partner.connections import uninstalls
from django_datadog_partner.connections.uninstalls import check_connection, run_in_use_health_checks
from django_datadog_partner.delivery import kick
from django_datadog_partner.models import Connection, ConnectionStatus, OutboxStatus
from django_datadog_partner.sandbox.state import Org
from django_datadog_partner.schedules import HOURLY, SCHEDULES
from django_datadog_partner.testing import FakeDatadog, make_connection
from tests.connect_support import CONNECTED, connect_through, make_user, signed_in
from tests.lifecycle_support import TOKEN_URL, oauth_error

pytestmark = pytest.mark.django_db


class Clock:
    """``timezone.now()`` everywhere (the package, the fake Datadog), moved by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.start = self.now = timezone.now()
        monkeypatch.setattr(timezone, "now", lambda: self.now)

    def minute(self) -> int:
        return int((self.now - self.start).total_seconds() // 60)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """What a django-q2 cluster would run for the tasks enqueued (inline, at once)."""
    checked: list[int] = []

    def check(ids: Any) -> None:
        for pk in ids:
            checked.append(pk)
            tasks.check_connection_health(pk)

    monkeypatch.setattr(kick, "enqueue_delivery", lambda count=1: delivery.drain())
    monkeypatch.setattr(kick, "enqueue_health_checks", check)
    return checked


class Tenant:
    def __init__(self, datadog: FakeDatadog, django_user_model: Any, name: str) -> None:
        self.datadog = datadog
        self.user = make_user(django_user_model, name)
        self.org: Org = datadog.create_org(f"{name} Inc")
        browser = signed_in(self.user)
        response = connect_through(browser, datadog, datadog.create_user(self.org, name))
        assert response["Location"] == CONNECTED

    @property
    def connection(self) -> Connection:
        return Connection.objects.owned_by(self.user).get()

    def ship(self, minute: int) -> None:
        tracking.send_event(self.user, title=f"minute {minute}", text="order paid")

    def received(self) -> list[int]:
        return [int(e["title"].split()[1]) for e in self.datadog.events(self.org)]

    def token_refreshes(self) -> int:
        """Token calls after the code exchange: refresh tokens the fake issued, minus one."""
        state = self.datadog.store.state  # type: ignore[attr-defined]
        issued = [
            t
            for t in state.tokens.values()
            if t.kind == "refresh" and state.grants[t.grant_id].org_id == self.org.id
        ]
        return len(issued) - 1


def run_schedules(clock: Clock) -> None:
    """Every schedule the app installs, at its cadence (``datadog_partner_schedule``)."""
    minute = clock.minute()
    for spec in SCHEDULES:
        every = 60 if spec.schedule_type == HOURLY else spec.minutes or 1
        if minute % every == 0:
            import_string(spec.func)()


def simulate(clock: Clock, minutes: int, senders: list[Tenant], **at: Any) -> dict[str, datetime]:
    """Each minute: the events due at that minute (``at``: {"uninstall": (minute, fn)}),
    a shipment every 5 minutes per sender, and the schedules. Returns when things happened."""
    happened = {}
    for minute in range(minutes):
        for name, (when, action) in at.items():
            if minute == when:
                action()
                happened[name] = clock.now
        if minute % 5 == 0:
            for tenant in senders:
                tenant.ship(minute)
        run_schedules(clock)
        clock.now += timedelta(minutes=1)
    return happened


def test_an_uninstall_stops_the_orgs_telemetry_within_the_hour(
    clock: Clock, datadog: FakeDatadog, django_user_model: Any, workers: list[int]
) -> None:
    uninstalled = Tenant(datadog, django_user_model, "acme")
    staying = Tenant(datadog, django_user_model, "globex")
    # Right after the hourly check at minute 59: the worst moment to uninstall.
    uninstall_at = 60
    happened = simulate(
        clock,
        240,
        [uninstalled, staying],
        uninstall=(uninstall_at, lambda: datadog.uninstall(uninstalled.org)),
    )

    connection = uninstalled.connection
    assert connection.status == ConnectionStatus.NEEDS_RECONNECT
    noticed_after = connection.status_changed_at - happened["uninstall"]
    assert timedelta(0) < noticed_after < timedelta(hours=1)
    assert max(uninstalled.received()) < uninstall_at + 60
    parked = connection.outbox_events.filter(status=OutboxStatus.PARKED).count()
    assert parked == len(range(0, 240, 5)) - len(uninstalled.received())

    # The org that stayed received everything; besides the daily check (due at once for a
    # new connection) its token was refreshed at most once an hour.
    assert staying.received() == list(range(0, 240, 5))
    assert staying.connection.status == ConnectionStatus.ACTIVE
    assert staying.token_refreshes() - 1 <= 240 // 60
    assert workers == []  # no intake 403 on the way


def test_an_idle_connection_keeps_its_daily_check_only(
    clock: Clock,
    datadog: FakeDatadog,
    django_user_model: Any,
    workers: list[int],
    partner_settings: Any,
) -> None:
    partner_settings(HEARTBEAT_METRIC="")
    idle = Tenant(datadog, django_user_model, "initech")
    simulate(clock, 240, [])
    assert idle.token_refreshes() == 1  # the daily check, in the first hourly run


def test_a_heartbeat_is_sending_so_its_connection_is_checked_hourly(
    clock: Clock, datadog: FakeDatadog, django_user_model: Any, workers: list[int]
) -> None:
    """The heartbeat reaches an uninstalled organisation like any telemetry would."""
    quiet = Tenant(datadog, django_user_model, "initech")
    simulate(clock, 240, [])
    assert quiet.token_refreshes() == 5  # the daily check, then one an hour


def test_an_intake_403_checks_that_connection_at_once(
    clock: Clock, datadog: FakeDatadog, django_user_model: Any, workers: list[int]
) -> None:
    """Uninstalled and its key revoked: the 403 makes the check that finds the uninstall."""
    tenant = Tenant(datadog, django_user_model, "acme")
    datadog.uninstall(tenant.org)
    datadog.revoke_api_key(tenant.org)
    tenant.ship(0)
    delivery.drain()
    assert workers == [tenant.connection.pk]
    assert tenant.connection.status == ConnectionStatus.NEEDS_RECONNECT


def test_the_check_an_intake_403_asks_for_runs_at_most_every_10_minutes(
    clock: Clock, datadog: FakeDatadog, django_user_model: Any
) -> None:
    tenant = Tenant(datadog, django_user_model, "acme")
    assert check_connection(tenant.connection.pk).startswith("Healthy")
    clock.now += timedelta(minutes=9)
    assert check_connection(tenant.connection.pk) == (
        "Not checked: checked less than 10 minutes ago."
    )
    clock.now += timedelta(minutes=2)
    assert check_connection(tenant.connection.pk).startswith("Healthy")
    assert tenant.token_refreshes() == 2
    assert check_connection(0).startswith("Not checked")


def test_health_checks_are_enqueued_with_the_connection_id_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enqueued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        "django_q.tasks.async_task", lambda *args, **kwargs: enqueued.append((args, kwargs))
    )
    kick.enqueue_health_checks([7, 9])
    assert [args for args, _kwargs in enqueued] == [(kick.HEALTH_TASK, 7), (kick.HEALTH_TASK, 9)]


# --- The run's limits (Datadog faked by ``responses``) ---------------------------------


def in_use(**fields: Any) -> Connection:
    """A connection Datadog accepted telemetry for since its check 2 hours ago."""
    now = timezone.now()
    connection = make_connection(**fields)
    Connection.objects.filter(pk=connection.pk).update(
        health_checked_at=now - timedelta(hours=2), last_success_at=now - timedelta(minutes=1)
    )
    return connection


def test_a_run_stops_at_its_time_budget_and_on_our_refused_credentials(mocked_http: Any) -> None:
    in_use(), in_use()
    assert run_in_use_health_checks(time_budget=-1).as_dict() == {
        "due": 2, "checked": 0, "healthy": 0, "unhealthy": 0, "stopped_early": True,
    }  # fmt: skip
    mocked_http.post(TOKEN_URL, status=401, body=oauth_error("invalid_client"))
    summary = run_in_use_health_checks()
    assert (summary.checked, summary.stopped_early) == (0, True)
    assert len(mocked_http.calls) == 1  # the others would only repeat it
    assert "credentials" in check_connection(Connection.objects.first().pk)  # type: ignore[union-attr]


def test_a_connection_an_overlapping_run_checked_is_skipped(
    mocked_http: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = in_use()
    selected = list(uninstalls.in_use_and_due(timezone.now()))
    Connection.objects.filter(pk=connection.pk).update(health_checked_at=timezone.now())
    monkeypatch.setattr(uninstalls, "in_use_and_due", lambda now: selected)
    summary = run_in_use_health_checks()
    assert (summary.due, summary.checked) == (1, 0)
    assert len(mocked_http.calls) == 0


def test_a_broker_error_enqueueing_a_check_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr("django_q.tasks.async_task", broken)
    kick.enqueue_health_checks([7])
    assert "Could not enqueue a Datadog health check" in caplog.text
