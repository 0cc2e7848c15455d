"""Operating the outbox: admin, commands, tasks, system checks (W010-W014, E010)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from django_datadog_partner import checks, delivery, tasks, tracking
from django_datadog_partner.models import OutboxEvent, OutboxStatus
from tests.connect_support import signed_in_with
from tests.outbox_support import statuses
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db


# --- admin -----------------------------------------------------------------------------------


def test_outbox_admin_is_read_only_with_filters(admin_client, org, conn, intake):
    intake.respond = lambda arrival: 400
    Order.objects.create(organization=org, number="A-1", secret_note="hush")
    delivery.drain()
    row = OutboxEvent.objects.get()
    url = reverse("admin:datadog_partner_outboxevent_changelist")
    page = admin_client.get(url).content.decode()
    assert "testapp.order" in page and "http_400" in page and "hush" not in page
    owner = f"{row.owner_content_type_id}:{row.owner_object_id}"
    for query in ("status__exact=dead", f"owner={owner}", f"connection__id__exact={conn.pk}",
                  "source=testapp.order", "kind__exact=event"):  # fmt: skip
        filtered = admin_client.get(f"{url}?{query}")
        assert filtered.status_code == 200 and f">{row.pk}<" in filtered.content.decode(), query
    assert f">{row.pk}<" not in admin_client.get(f"{url}?owner=999:1").content.decode()
    detail = admin_client.get(reverse("admin:datadog_partner_outboxevent_change", args=[row.pk]))
    assert detail.status_code == 200 and b"Order created: A-1" in detail.content
    assert b'name="_save"' not in detail.content
    assert admin_client.get(reverse("admin:datadog_partner_outboxevent_add")).status_code == 403


def test_admin_requeue_sends_dead_rows_once_more(admin_client, org, conn, intake, kicks):
    intake.respond = lambda arrival: 400
    tracking.send_event(org, title="t", text="x")
    delivery.drain()
    tracking.send_event(org, title="pending", text="x")
    url = reverse("admin:datadog_partner_outboxevent_changelist")
    ids = [str(pk) for pk in OutboxEvent.objects.values_list("pk", flat=True)]
    response = admin_client.post(url, {"action": "requeue", "_selected_action": ids}, follow=True)
    text = response.content.decode()
    assert "1 row requeued." in text and "1 selected rows were left alone" in text
    intake.respond = lambda arrival: 202
    delivery.drain()
    assert sorted(statuses().values()) == ["delivered", "delivered"]
    assert len(intake.arrivals) == 3


@pytest.mark.parametrize(
    ("codenames", "requeued"),
    [(("view_outboxevent",), False), (("view_outboxevent", "change_outboxevent"), True)],
    ids=["view only", "change"],
)
def test_requeue_needs_the_change_permission_on_the_outbox(
    django_user_model, org, conn, intake, kicks, codenames, requeued
):
    intake.respond = lambda arrival: 400
    tracking.send_event(org, title="t", text="x")
    delivery.drain()
    client = signed_in_with(django_user_model, "ops", *codenames, is_staff=True)
    url = reverse("admin:datadog_partner_outboxevent_changelist")
    assert ('value="requeue"' in client.get(url).content.decode()) is requeued
    ids = [str(pk) for pk in OutboxEvent.objects.values_list("pk", flat=True)]
    client.post(url, {"action": "requeue", "_selected_action": ids})
    assert list(statuses().values()) == (["pending"] if requeued else ["dead"])


# --- commands --------------------------------------------------------------------------------


def test_deliver_command_drains_with_progress_and_summary(org, conn, intake):
    for n in range(3):
        tracking.send_event(org, title=str(n), text="x")
    out = StringIO()
    call_command("datadog_partner_deliver", stdout=out)
    assert out.getvalue().splitlines() == [
        "3 row(s) due.",
        "  … delivered: 3",
        "Done: delivered: 3.",
    ]
    assert len(intake.arrivals) == 3


def test_deliver_command_with_nothing_due():
    out = StringIO()
    call_command("datadog_partner_deliver", stdout=out)
    assert out.getvalue().splitlines() == ["0 row(s) due.", "Done: nothing due."]


def test_purge_command(org, conn, intake):
    tracking.send_event(org, title="t", text="x")
    delivery.drain()
    OutboxEvent.objects.update(created_at=timezone.now() - timedelta(days=40))
    out = StringIO()
    call_command("datadog_partner_purge", "--older-than", "30", stdout=out)
    assert out.getvalue().strip() == "Deleted 1 outbox row(s) older than 30 day(s)."
    with pytest.raises(CommandError, match="zero or more"):
        call_command("datadog_partner_purge", "--older-than", "-1")


# --- tasks -----------------------------------------------------------------------------------


def test_sweeper_enqueues_one_task_per_batch_up_to_the_workers(org, kicks, partner_settings):
    partner_settings(DELIVERY_BATCH_SIZE=2)
    assert tasks.sweep_outbox() == 0 and kicks == []
    for n in range(5):
        tracking.send_event(org, title=str(n), text="x")
    OutboxEvent.objects.filter(pk=OutboxEvent.objects.first().pk).update(  # type: ignore[union-attr]
        next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    assert tasks.sweep_outbox() == 4
    assert kicks == [2]  # 2 batches due, the test cluster has 2 workers


def test_deliver_due_task_drains_and_hands_over_when_out_of_time(org, conn, intake, kicks):
    tracking.send_event(org, title="t", text="x")
    assert tasks.deliver_due() == "delivered: 1"
    from django_q.conf import Conf

    tracking.send_event(org, title="u", text="x")
    old, Conf.TIMEOUT = Conf.TIMEOUT, -1
    try:
        assert tasks.deliver_due() == "budget_exhausted: 1"
    finally:
        Conf.TIMEOUT = old
    assert kicks == [1]


# --- system checks ---------------------------------------------------------------------------


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        ({"timeout": 60, "retry": 120, "ack_failures": True}, []),
        ({"retry": 120, "ack_failures": True}, ["datadog_partner.W012"]),
        ({"timeout": 60, "retry": 60, "ack_failures": True}, ["datadog_partner.W013"]),
        ({"timeout": 90, "ack_failures": True}, ["datadog_partner.W013"]),  # retry defaults to 60
        ({"timeout": 60, "retry": 120}, ["datadog_partner.W014"]),
        ({}, ["datadog_partner.W012", "datadog_partner.W014"]),
    ],
)
def test_q_cluster_checks(settings, cluster, expected):
    settings.Q_CLUSTER = cluster
    assert ids(checks.check_q_cluster()) == expected


def test_sweeper_checks(partner_settings):
    assert checks.check_outbox_sweeper() == []  # only with --database
    assert ids(checks.check_outbox_sweeper(databases=["default"])) == ["datadog_partner.W011"]
    partner_settings(KICK_ON_COMMIT=False)
    assert ids(checks.check_outbox_sweeper(databases=["default"])) == ["datadog_partner.W010"]
    Schedule.objects.create(func=checks.SWEEPER_TASK, schedule_type=Schedule.MINUTES, minutes=1)
    assert checks.check_outbox_sweeper(databases=["default"]) == []


def test_schedule_command_creates_the_sweeper_the_check_looks_for():
    call_command("datadog_partner_schedule", stdout=StringIO())
    assert checks.check_outbox_sweeper(databases=["default"]) == []


def test_lease_check(partner_settings):
    assert checks.check_lease() == []
    partner_settings(LEASE_SECONDS=15)
    assert ids(checks.check_lease()) == ["datadog_partner.E010"]


def test_outbox_status_values_are_the_documented_ones():
    assert [s.value for s in OutboxStatus] == [
        "pending", "delivered", "no_connection", "parked", "dead", "expired", "cancelled",
    ]  # fmt: skip
