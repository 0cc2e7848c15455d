"""The sweeper reports the outbox's health every minute (AT-56, AT-63): a log line and the
``outbox_measured`` signal with DLQ size, parked rows, oldest due age and open breakers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_datadog_partner import tasks, tracking
from django_datadog_partner.delivery import kick
from django_datadog_partner.models import OutboxEvent, OutboxStatus, SiteBreaker
from django_datadog_partner.signals import outbox_measured
from django_datadog_partner.testing import make_connection
from tests.testapp.models import Organization

pytestmark = pytest.mark.django_db


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    monkeypatch.setattr(kick, "enqueue_delivery", lambda count=1: None)
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append({k: v for k, v in kwargs.items() if k != "signal"})

    outbox_measured.connect(receiver, dispatch_uid="test-measured")
    yield seen
    outbox_measured.disconnect(dispatch_uid="test-measured")


def test_the_sweeper_reports_dead_parked_pending_and_the_oldest_wait(
    measured, caplog, partner_settings
):
    partner_settings(HEARTBEAT_METRIC="")  # rows: ours
    conn = make_connection(Organization.objects.create(name="o"))
    for n in range(7):
        tracking.send_event(conn, title=str(n), text="x")
    ids = list(OutboxEvent.objects.order_by("pk").values_list("pk", flat=True))
    OutboxEvent.objects.filter(pk__in=ids[:3]).update(status=OutboxStatus.DELIVERED)
    OutboxEvent.objects.filter(pk=ids[3]).update(status=OutboxStatus.DEAD)
    OutboxEvent.objects.filter(pk=ids[4]).update(status=OutboxStatus.PARKED)
    waited = timezone.now() - timedelta(minutes=5)
    OutboxEvent.objects.filter(pk=ids[5]).update(next_attempt_at=waited)
    OutboxEvent.objects.filter(pk=ids[6]).update(next_attempt_at=timezone.now() + timedelta(1))
    SiteBreaker.objects.create(domain="datadoghq.eu", failures=5, open_until=timezone.now())

    with caplog.at_level(logging.INFO, logger="django_datadog_partner.monitoring"):
        tasks.sweep_outbox()

    [report] = measured
    assert report["by_status"] == {"pending": 2, "parked": 1, "dead": 1}
    assert 299 <= report["oldest_due_seconds"] < 330
    assert report["open_breakers"] == ["datadoghq.eu"]
    [record] = caplog.records
    assert record.outbox["dead"] == 1
    assert "2 pending, 1 parked, 1 dead" in record.getMessage()
    assert "open breakers: datadoghq.eu" in record.getMessage()


def test_an_empty_outbox_reports_zeros_and_no_wait(measured):
    tasks.sweep_outbox()
    assert measured == [
        {"by_status": {"pending": 0, "parked": 0, "dead": 0}, "oldest_due_seconds": None,
         "open_breakers": []}
    ]  # fmt: skip
