"""The admin's status dashboard and the report figures it reads: connections by status,
the backlog, alarms, breakers, outcomes per hour over 48 hours, and the schedules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_datadog_partner.admin.chart import hourly_chart, nice_ceiling
from django_datadog_partner.alarms import raise_alarm
from django_datadog_partner.models import (
    ConnectionStatus,
    OutboxEvent,
    OutboxKind,
    OutboxStatus,
    SiteBreaker,
)
from django_datadog_partner.report import HOURS, StatusReport
from django_datadog_partner.schedules import ensure_schedules
from django_datadog_partner.testing import make_connection

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/datadog_partner/statusdashboard/"
NOW = datetime(2026, 3, 4, 12, 30, tzinfo=UTC)


def finished(kind: str, status: str, at: datetime, n: int = 1) -> None:
    OutboxEvent.objects.bulk_create(
        OutboxEvent(kind=kind, payload={}, status=status, created_at=at, finished_at=at)
        for _ in range(n)
    )


def staff(*codenames: str) -> Client:
    user = get_user_model().objects.create_user("sam", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


# --- the report's figures ----------------------------------------------------------------


def test_outcomes_per_hour_cover_48_hours_and_count_only_delivered_and_failed():
    finished(OutboxKind.EVENT, OutboxStatus.DELIVERED, NOW - timedelta(minutes=5), n=3)
    finished(OutboxKind.EVENT, OutboxStatus.DEAD, NOW - timedelta(minutes=10))
    finished(OutboxKind.METRIC, OutboxStatus.EXPIRED, NOW - timedelta(hours=2, minutes=1))
    finished(OutboxKind.LOG, OutboxStatus.DELIVERED, NOW - timedelta(hours=47, minutes=29))
    # Not counted: too old, or finished without being delivered or given up.
    finished(OutboxKind.LOG, OutboxStatus.DELIVERED, NOW - timedelta(hours=48, minutes=31))
    finished(OutboxKind.EVENT, OutboxStatus.CANCELLED, NOW - timedelta(minutes=1))
    finished(OutboxKind.EVENT, OutboxStatus.PARKED, NOW - timedelta(minutes=1))

    hours = StatusReport(NOW).hourly_outcomes

    assert len(hours) == HOURS
    assert hours[-1].hour == datetime(2026, 3, 4, 12, tzinfo=UTC)
    assert hours[0].hour == datetime(2026, 3, 2, 13, tzinfo=UTC)
    assert (hours[-1].delivered["event"], hours[-1].failed["event"]) == (3, 1)
    assert hours[-3].failed == {"event": 0, "metric": 1, "log": 0, "check": 0}
    assert hours[0].delivered["log"] == 1
    totals = sum(sum(h.delivered.values()) + sum(h.failed.values()) for h in hours)
    assert totals == 6


def test_the_hourly_count_is_one_query_on_the_finish_time_index(django_assert_num_queries):
    finished(OutboxKind.EVENT, OutboxStatus.DELIVERED, NOW - timedelta(minutes=5))
    with django_assert_num_queries(1) as captured:
        StatusReport(NOW).hourly_outcomes
    sql = captured.captured_queries[0]["sql"]
    assert "GROUP BY" in sql and '"finished_at" >=' in sql


def test_the_chart_stacks_failed_on_delivered_and_labels_every_bar():
    finished(OutboxKind.EVENT, OutboxStatus.DELIVERED, NOW - timedelta(minutes=5), n=8)
    finished(OutboxKind.EVENT, OutboxStatus.DEAD, NOW - timedelta(minutes=5), n=2)
    chart = hourly_chart(StatusReport(NOW).hourly_outcomes, "event", "Events per hour")
    last = chart.bars[-1]
    assert chart.top == 10 and (chart.delivered, chart.failed) == (8, 2)
    assert last.failed_y + last.failed_height == pytest.approx(last.delivered_y)
    assert last.delivered_height == pytest.approx(4 * last.failed_height)
    assert last.title.endswith("8 delivered, 2 failed")
    assert [level.label for level in chart.levels] == ["0", "5", "10"]
    assert len(chart.hours) == HOURS // 6


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (3, 5), (11, 20), (50, 50), (51, 100)])
def test_the_axis_ends_on_a_round_number(value, top):
    assert nice_ceiling(value) == top


def test_schedules_report_their_next_run_and_what_is_missing():
    ensure_schedules()
    from django_q.models import Schedule

    Schedule.objects.filter(name="datadog_partner: outbox sweeper").delete()
    states = {state.spec.name: state for state in StatusReport().schedules}
    assert not states["datadog_partner: outbox sweeper"].exists
    assert states["datadog_partner: health checks"].up_to_date
    assert states["datadog_partner: health checks"].next_run is not None
    assert [spec.name for spec in StatusReport().schedules_missing] == [
        "datadog_partner: outbox sweeper"
    ]


# --- the page ----------------------------------------------------------------------------


def test_the_dashboard_needs_the_view_permission_on_connections():
    assert staff().get(DASHBOARD).status_code == 403
    get_user_model().objects.all().delete()
    assert staff("view_connection").get(DASHBOARD).status_code == 200


def test_the_admin_index_and_the_connection_list_link_to_the_dashboard():
    viewer = staff("view_connection")
    assert DASHBOARD in viewer.get(reverse("admin:index")).content.decode()
    assert (
        DASHBOARD
        in viewer.get(reverse("admin:datadog_partner_connection_changelist")).content.decode()
    )
    get_user_model().objects.all().delete()
    outsider = staff("view_alarm")
    assert DASHBOARD not in outsider.get(reverse("admin:index")).content.decode()


def test_the_dashboard_shows_every_figure_of_the_report(admin_client):
    make_connection(dd_org_name="Acme")
    make_connection(status=ConnectionStatus.NEEDS_RECONNECT)
    make_connection(status=ConnectionStatus.NEEDS_RECONNECT)
    waiting = timezone.now() - timedelta(minutes=20)
    OutboxEvent.objects.create(kind="event", payload={}, next_attempt_at=waiting)
    finished(OutboxKind.METRIC, OutboxStatus.DEAD, timezone.now() - timedelta(minutes=3), n=2)
    raise_alarm("invalid_client", "Datadog refused this OAuth client's credentials.")
    SiteBreaker.objects.create(domain="datadoghq.eu", failures=9, last_error="HTTP 503",
                               open_until=timezone.now() + timedelta(minutes=1))  # fmt: skip
    ensure_schedules()

    page = admin_client.get(DASHBOARD).content.decode()

    changelist = reverse("admin:datadog_partner_connection_changelist")
    link = f'<a href="{changelist}?status__exact=needs_reconnect">'
    assert re.search(
        re.escape(link)
        + r'<span class="ddp-badge[^"]*"[^>]*>Needs reconnect</span> <strong>2</strong>',
        page,
    )
    assert "Connections (3)" in page
    assert '?status__exact=pending"><span>Pending</span> <strong>1</strong>' in page
    assert '?status__exact=dead"><span>Dead (permanent error)</span> <strong>2</strong>' in page
    assert re.search(r"Oldest due row: due <time [^>]+>20 min ago</time>", page)
    assert "is the qcluster running?" in page  # waited longer than OUTBOX_STALE_AFTER
    assert "invalid_client" in page and "datadoghq.eu" in page
    assert "Metric points per hour: 0 delivered, 2 failed" in page
    assert page.count('role="img"') == 4 and 'class="failed"' in page
    assert '<th scope="colgroup" colspan="2">Log entries</th>' in page
    assert "datadog_partner: outbox sweeper" in page and "Missing</span>" not in page
    assert "datadog_partner_schedule</code> to create" not in page
    assert "<script" not in page.split('id="content-main"')[1].split("</main>")[0]


def test_the_dashboard_reads_a_bounded_number_of_queries(
    admin_client, django_assert_max_num_queries
):
    for _ in range(5):
        make_connection()
    for hour in range(48):
        finished(OutboxKind.EVENT, OutboxStatus.DELIVERED, timezone.now() - timedelta(hours=hour))
    with django_assert_max_num_queries(15):
        assert admin_client.get(DASHBOARD).status_code == 200
