"""The django-q2 schedules the app needs; ``datadog_partner_schedule`` creates them.

Schedules are matched by name, so running the command again updates them in place (and
leaves a host's own schedules alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

#: django-q2 ``Schedule.schedule_type`` values (kept here so importing this module needs
#: no database-backed model).
MINUTES = "I"
HOURLY = "H"


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    schedule_type: str
    minutes: int | None
    purpose: str

    def fields(self) -> dict[str, Any]:
        return {
            "func": self.func,
            "schedule_type": self.schedule_type,
            "minutes": self.minutes,
            "repeats": -1,
        }


SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec(
        "datadog_partner: health checks",
        "django_datadog_partner.tasks.check_connections_health",
        HOURLY,
        None,
        "each connection once a day (a slice every hour): token refresh + API key validation",
    ),
    ScheduleSpec(
        "datadog_partner: checks of sending connections",
        "django_datadog_partner.tasks.check_sending_connections",
        MINUTES,
        1,
        "connections in use checked hourly (token refresh + API key validation), so an "
        "uninstall stops their telemetry within the hour",
    ),
    ScheduleSpec(
        "datadog_partner: revocation retries",
        "django_datadog_partner.tasks.retry_revocations",
        MINUTES,
        5,
        "finish disconnects Datadog did not confirm (timeouts, 5xx)",
    ),
    ScheduleSpec(
        "datadog_partner: purge authorization requests",
        "django_datadog_partner.tasks.purge_authorization_requests",
        HOURLY,
        None,
        "delete expired and used OAuth authorization requests",
    ),
    ScheduleSpec(
        "datadog_partner: outbox sweeper",
        "django_datadog_partner.tasks.sweep_outbox",
        MINUTES,
        1,
        "deliver telemetry that a lost kick, a broker outage or a killed worker left behind",
    ),
)


def ensure_schedules() -> list[tuple[ScheduleSpec, str]]:
    """Create or update every schedule; returns ``(spec, "created"|"updated"|"unchanged")``."""
    from django_q.models import Schedule

    results = []
    for spec in SCHEDULES:
        wanted = spec.fields()
        existing = Schedule.objects.filter(name=spec.name).order_by("pk").first()
        if existing is None:
            Schedule.objects.create(name=spec.name, next_run=timezone.now(), **wanted)
            results.append((spec, "created"))
        elif any(getattr(existing, key) != value for key, value in wanted.items()):
            for key, value in wanted.items():
                setattr(existing, key, value)
            existing.save()
            results.append((spec, "updated"))
        else:
            results.append((spec, "unchanged"))
    return results


@dataclass(frozen=True)
class ScheduleState:
    """One schedule the app needs as django-q2 holds it: ``next_run`` is None when missing."""

    spec: ScheduleSpec
    exists: bool
    up_to_date: bool
    next_run: datetime | None


def schedule_states() -> list[ScheduleState]:
    """Each schedule the app needs, whether it exists and matches, and its next run."""
    from django_q.models import Schedule

    current = {s.name: s for s in Schedule.objects.filter(name__in=[s.name for s in SCHEDULES])}
    states = []
    for spec in SCHEDULES:
        found = current.get(spec.name)
        matches = found is not None and all(
            getattr(found, key) == value for key, value in spec.fields().items()
        )
        next_run = found.next_run if found is not None else None
        states.append(ScheduleState(spec, found is not None, matches, next_run))
    return states


def schedules_out_of_date() -> list[ScheduleSpec]:
    """Schedules that are missing or differ from what the app needs."""
    return [state.spec for state in schedule_states() if not state.up_to_date]
