"""The heartbeat metric: the sweeper queues one gauge point per active connection and
interval, and it reaches each customer's own Datadog org with that org's key."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from django_datadog_partner import delivery, heartbeat, tasks
from django_datadog_partner.delivery import kick
from django_datadog_partner.models import Connection, ConnectionStatus, OutboxEvent
from django_datadog_partner.testing import FakeDatadog
from tests.testapp.models import Organization

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDatadog]:
    monkeypatch.setattr(kick, "enqueue_delivery", lambda count=1: None)  # we drain ourselves
    with FakeDatadog("datadoghq.com") as datadog:
        yield datadog


def test_the_sweeper_sends_each_active_connection_one_heartbeat_per_interval(
    fake, partner_settings
):
    partner_settings(SOURCE_TYPE_NAME="Acme-Shop")
    acme = fake.connection(Organization.objects.create(name="Acme"))
    globex = fake.connection(Organization.objects.create(name="Globex"), domain="datadoghq.eu")
    fake.connection(Organization.objects.create(name="Gone"), status=ConnectionStatus.REVOKED)
    fake.connection(Organization.objects.create(name="Broken"), status="api_key_rejected")

    assert tasks.sweep_outbox() == 2  # the two heartbeats are due at once
    delivery.drain()
    for conn in (acme, globex):
        (point,) = fake.series(conn)
        assert point["metric"] == "acme_shop.heartbeat"
        assert (point["type"], point["points"][0]["value"]) == (3, 1.0)
    assert {call.domain for call in fake.calls} == {"datadoghq.com", "datadoghq.eu"}

    tasks.sweep_outbox()  # a minute later: not due yet
    assert OutboxEvent.objects.count() == 2

    Connection.objects.update(heartbeat_at=timezone.now() - timedelta(seconds=301))
    tasks.sweep_outbox()
    assert OutboxEvent.objects.filter(connection=acme, source=heartbeat.SOURCE).count() == 2


def test_overlapping_sweeps_queue_one_heartbeat(fake):
    fake.connection(Organization.objects.create(name="Acme"))
    now = timezone.now()
    assert heartbeat.send_heartbeats(now) == 1
    assert heartbeat.send_heartbeats(now + timedelta(seconds=1)) == 0


def test_the_name_and_interval_are_settings_and_an_empty_name_stops_it(
    fake, partner_settings, caplog
):
    conn = fake.connection(Organization.objects.create(name="Acme"))
    partner_settings(HEARTBEAT_METRIC="acme.up", HEARTBEAT_INTERVAL=60)
    start = timezone.now()
    assert heartbeat.send_heartbeats(start) == 1
    assert heartbeat.send_heartbeats(start + timedelta(seconds=61)) == 1
    assert {row.payload["metric"] for row in OutboxEvent.objects.all()} == {"acme.up"}

    partner_settings(HEARTBEAT_METRIC="")
    assert heartbeat.send_heartbeats(start + timedelta(hours=1)) == 0

    partner_settings(HEARTBEAT_METRIC="9 lives")
    with caplog.at_level(logging.ERROR, logger="django_datadog_partner.delivery"):
        assert heartbeat.send_heartbeats(start + timedelta(hours=2)) == 0
    assert "HEARTBEAT_METRIC '9 lives' cannot be sent" in caplog.text
    conn.refresh_from_db()
    assert conn.heartbeat_at == start + timedelta(seconds=61)


def test_a_failing_heartbeat_never_stops_the_sweep(fake, monkeypatch, caplog):
    from django.db import DatabaseError

    def broken(now=None):
        raise DatabaseError("disk full")

    monkeypatch.setattr(heartbeat, "send_heartbeats", broken)
    fake.connection(Organization.objects.create(name="Acme"))
    with caplog.at_level(logging.ERROR, logger="django_datadog_partner.delivery"):
        assert tasks.sweep_outbox() == 0
    assert "Could not queue the Datadog heartbeats" in caplog.text
