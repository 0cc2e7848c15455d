"""The status dashboard: the status report (``report.StatusReport``, the figures
``datadog_partner_status`` prints) on one admin page.

It changes nothing and shows no secret, so the view permission on connections is enough.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from ..conf import app_settings
from ..models import ConnectionStatus, OutboxKind, StatusDashboard
from ..report import HOURS, MEASURED, StatusReport
from ..templatetags.datadog_partner import status_badge
from .chart import hourly_chart
from .display import when

VIEW_PERMISSION = "datadog_partner.view_connection"
PLURALS = {OutboxKind.EVENT: "Events", OutboxKind.METRIC: "Metric points",
           OutboxKind.LOG: "Log entries", OutboxKind.CHECK: "Service checks"}  # fmt: skip


@admin.register(StatusDashboard)
class StatusDashboardAdmin(admin.ModelAdmin):
    """One page, no rows: listed on the admin index for whoever may view connections."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm(VIEW_PERMISSION))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view(self.dashboard_view)
        return [path("", view, name="{}_{}_changelist".format(*info))]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        report = StatusReport()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Datadog integration status",
            **dashboard_context(report),
        }
        return TemplateResponse(request, "admin/datadog_partner/statusdashboard/dashboard.html",
                                context)  # fmt: skip


def dashboard_context(report: StatusReport) -> dict[str, Any]:
    """Everything the page shows, read from ``report``."""
    connections = reverse("admin:datadog_partner_connection_changelist")
    rows = reverse("admin:datadog_partner_outboxevent_changelist")
    by_status = report.connections_by_status
    statuses = [
        {"badge": status_badge(status), "count": by_status.get(status, 0),
         "url": f"{connections}?status__exact={status}"}
        for status in ConnectionStatus.values
        if by_status.get(status)
    ]  # fmt: skip
    waiting = report.oldest_due_seconds
    outcomes = report.hourly_outcomes
    return {
        "now": report.now,
        "connection_count": sum(by_status.values()),
        "statuses": statuses,
        "revoking_too_long": report.revoking_too_long,
        "backlog": [
            {
                "status": status.label,
                "count": report.measured_backlog.shown(status.value),
                "url": f"{rows}?status__exact={status.value}",
            }
            for status in MEASURED
        ],
        "oldest_due": when(report.measured_backlog.oldest_due_since, report.now),
        "oldest_due_stale": waiting is not None and waiting > app_settings.OUTBOX_STALE_AFTER,
        "alarms": report.alarms,
        "breakers": report.open_breakers,
        "hours": HOURS,
        "charts": [hourly_chart(outcomes, kind, f"{PLURALS[kind]} per hour") for kind in PLURALS],
        "outcomes": [
            {
                "hour": timezone.localtime(o.hour),
                "counts": [(o.delivered[kind], o.failed[kind]) for kind in PLURALS],
            }
            for o in reversed(outcomes)
        ],
        "kinds": list(PLURALS.values()),
        "schedules": [
            {"state": state, "next_run": when(state.next_run, report.now)}
            for state in report.schedules
        ],
        "schedules_missing": bool(report.schedules_missing),
    }
