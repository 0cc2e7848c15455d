"""The status report: connections by status, open alarms, the schedules, the outbox
backlog, telemetry delivered and failed per hour, open site breakers and revocations
Datadog never confirmed.

``datadog_partner_status``, the system checks, the sweeper's monitoring line and the admin
dashboard read the same figures from here. Each figure is read from the database on first use only,
so a check that needs one pays for one query.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from django.db.models import Count
from django.utils import timezone

from .delivery.breaker import open_breakers
from .models import (
    Alarm,
    Connection,
    ConnectionStatus,
    OutboxEvent,
    OutboxKind,
    OutboxStatus,
    SiteBreaker,
)
from .outbox import COUNT_CAP, FAILED, Backlog, backlog, finished_per_hour
from .schedules import ScheduleSpec, ScheduleState, schedule_states
from .signals import outbox_measured

monitoring = logging.getLogger("django_datadog_partner.monitoring")

#: A disconnect still unconfirmed after this long needs a person (check W022).
REVOKING_TOO_LONG = timedelta(hours=24)

#: Never loaded for the report: it shows last-4 values only.
SECRET_FIELDS = ("access_token", "refresh_token", "api_key")

#: The outbox statuses the sweeper reports every minute; finished rows are most of the
#: table, so they are left to the full report.
MEASURED = (OutboxStatus.PENDING, OutboxStatus.PARKED, OutboxStatus.DEAD)

#: Outcomes per hour cover this many hours, the current one last.
HOURS = 48


@dataclass(frozen=True)
class HourOutcomes:
    """Rows of each kind delivered, and failed (dead or expired), in one hour (UTC)."""

    hour: datetime
    delivered: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)


class StatusReport:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or timezone.now()

    @cached_property
    def connections_by_status(self) -> dict[str, int]:
        counted = Connection.objects.order_by().values_list("status").annotate(n=Count("pk"))
        return dict(Counter(dict(counted)))

    @cached_property
    def alarms(self) -> list[Alarm]:
        return list(Alarm.objects.filter(cleared_at__isnull=True))

    @cached_property
    def schedules(self) -> list[ScheduleState]:
        return schedule_states()

    @property
    def schedules_missing(self) -> list[ScheduleSpec]:
        """Schedules missing or different from what the app needs."""
        return [state.spec for state in self.schedules if not state.up_to_date]

    @cached_property
    def backlog(self) -> Backlog:
        return backlog(self.now)

    @cached_property
    def measured_backlog(self) -> Backlog:
        """The backlog of the statuses that need attention, read off the status index and
        counted up to ``outbox.COUNT_CAP`` each (a bounded read whatever the backlog)."""
        return backlog(self.now, statuses=MEASURED, at_most=COUNT_CAP)

    @property
    def oldest_due_seconds(self) -> float | None:
        return self.measured_backlog.waiting_seconds(self.now)

    @cached_property
    def hourly_outcomes(self) -> list[HourOutcomes]:
        """Every one of the last ``HOURS`` hours, oldest first, counted in SQL by hour."""
        current = self.now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        hours = [current - timedelta(hours=n) for n in range(HOURS - 1, -1, -1)]
        counted = finished_per_hour(hours[0])
        outcomes = []
        for hour in hours:
            delivered, failed = {}, {}
            for kind in OutboxKind.values:
                delivered[kind] = counted.get((hour, kind, OutboxStatus.DELIVERED), 0)
                failed[kind] = sum(counted.get((hour, kind, status), 0) for status in FAILED)
            outcomes.append(HourOutcomes(hour, delivered, failed))
        return outcomes

    @cached_property
    def open_breakers(self) -> list[SiteBreaker]:
        return open_breakers()

    @cached_property
    def revoking_too_long(self) -> int:
        return Connection.objects.filter(
            status=ConnectionStatus.REVOKING, status_changed_at__lt=self.now - REVOKING_TOO_LONG
        ).count()

    def document(self, status: str | None = None) -> dict[str, Any]:
        """Everything, as plain data (``datadog_partner_status --json`` prints it as is);
        ``status`` limits the connections listed, not the counts."""
        connections = Connection.objects.defer(*SECRET_FIELDS).prefetch_related("owner")
        if status:
            connections = connections.filter(status=status)
        rows = [_connection_row(c) for c in connections.order_by("pk")]
        return {
            "connections": rows,
            "by_status": dict(Counter(row["status"] for row in rows)),
            "alarms": [_alarm_row(alarm) for alarm in self.alarms],
            "schedules_missing": [spec.name for spec in self.schedules_missing],
            "outbox": {
                "by_status": self.backlog.by_status,
                "oldest_due_seconds": self.backlog.waiting_seconds(self.now),
            },
            "site_breakers_open": [_breaker_row(breaker) for breaker in self.open_breakers],
        }


def _connection_row(connection: Connection) -> dict[str, Any]:
    return {
        "id": connection.pk,
        "status": connection.status,
        "status_reason": connection.status_reason,
        "connection": connection.label,
        "domain": connection.domain,
        "org": connection.dd_org_name or connection.dd_org_id or None,
        "owner": connection.owner_name,
        "api_key": f"…{connection.api_key_last4}" if connection.api_key_last4 else None,
        "token_expires": _time(connection.expires_at),
        "last_success": _time(connection.last_success_at),
        "last_error": (
            f"{connection.last_error_code} {_time(connection.last_error_at)}"
            if connection.last_error_code
            else None
        ),
        "health_checked": _time(connection.health_checked_at),
    }


def _alarm_row(alarm: Alarm) -> dict[str, Any]:
    last = _time(alarm.last_raised_at)
    return {"code": alarm.code, "message": alarm.message, "count": alarm.count, "last": last}


def _breaker_row(breaker: SiteBreaker) -> dict[str, Any]:
    until = breaker.open_until.isoformat() if breaker.open_until else None
    return {"domain": breaker.domain, "open_until": until, "failures": breaker.failures,
            "last_error": breaker.last_error}  # fmt: skip


def _time(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M") if value else None


def report_outbox_health() -> None:
    """The sweeper's minute report for the vendor's own monitoring: a log line and
    ``outbox_measured``. DLQ size (``dead``), parked rows and the age of the oldest due row
    tell that telemetry stopped flowing, so an alert can fire without polling the database.
    Each count stops at ``outbox.COUNT_CAP`` (10,000): a count at the cap means
    at least that many, and the report costs milliseconds on any backlog.
    """
    report = StatusReport()
    measured = report.measured_backlog
    by_status = {status.value: measured.by_status.get(status.value, 0) for status in MEASURED}
    oldest = report.oldest_due_seconds
    tripped = [breaker.domain for breaker in report.open_breakers]
    monitoring.info(
        "Outbox: %s pending, %s parked, %s dead; oldest due row waited %s; open breakers: %s.",
        measured.shown("pending"),
        measured.shown("parked"),
        measured.shown("dead"),
        "-" if oldest is None else f"{oldest:.0f} s",
        ", ".join(tripped) or "none",
        extra={"outbox": {**by_status, "oldest_due_seconds": oldest, "open_breakers": tripped}},
    )
    outbox_measured.send(
        sender=OutboxEvent, by_status=by_status, oldest_due_seconds=oldest, open_breakers=tripped
    )
