"""The outbox backlog: in ``datadog_partner_status`` and as check W015 (a cluster that stopped
draining the outbox is noticed from outside it)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from django_datadog_partner.checks import check_outbox_draining
from django_datadog_partner.models import OutboxEvent, OutboxKind, OutboxStatus
from django_datadog_partner.outbox import backlog
from django_datadog_partner.testing import make_connection

pytestmark = pytest.mark.django_db


def add_row(status: str, *, due_minutes_ago: float = 0, leased: bool = False) -> OutboxEvent:
    connection = make_connection()
    now = timezone.now()
    return OutboxEvent.objects.create(
        kind=OutboxKind.EVENT,
        owner_content_type=connection.owner_content_type,
        owner_object_id=connection.owner_object_id,
        connection=connection,
        payload={"title": "t", "text": "x"},
        status=status,
        next_attempt_at=now - timedelta(minutes=due_minutes_ago),
        lease_until=now + timedelta(minutes=1) if leased else None,
    )


def w015() -> list[str]:
    return [m.id or "" for m in check_outbox_draining(databases=["default"])]


def test_backlog_counts_and_the_oldest_unclaimed_due_row():
    add_row(OutboxStatus.DELIVERED)
    add_row(OutboxStatus.PENDING, due_minutes_ago=-5)  # backing off: not due yet
    add_row(OutboxStatus.PENDING, due_minutes_ago=30, leased=True)  # a worker has it
    waiting = add_row(OutboxStatus.PENDING, due_minutes_ago=3)
    now = timezone.now()
    result = backlog(now)
    assert result.by_status == {"delivered": 1, "pending": 3}
    assert result.oldest_due_since == waiting.next_attempt_at
    seconds = result.waiting_seconds(now)
    assert seconds is not None
    assert 170 < seconds < 190


def test_w015_warns_only_when_due_rows_wait_past_the_limit(partner_settings):
    assert w015() == []
    add_row(OutboxStatus.PENDING, due_minutes_ago=3)
    assert w015() == []  # the default limit is 15 minutes
    partner_settings(OUTBOX_STALE_AFTER=60)
    assert w015() == ["datadog_partner.W015"]
    assert check_outbox_draining() == []  # a database check: only with --database


def test_status_shows_the_outbox(capsys):
    add_row(OutboxStatus.DEAD)
    add_row(OutboxStatus.PENDING, due_minutes_ago=2)
    call_command("datadog_partner_status")
    out = capsys.readouterr().out
    assert "Outbox: 1 dead, 1 pending; the oldest due item has waited" in out
    call_command("datadog_partner_status", "--json")
    outbox = json.loads(capsys.readouterr().out)["outbox"]
    assert outbox["by_status"] == {"dead": 1, "pending": 1}
    assert outbox["oldest_due_seconds"] >= 119


def test_status_with_an_empty_outbox(capsys):
    call_command("datadog_partner_status")
    assert "Outbox: empty." in capsys.readouterr().out
