"""Noticing an uninstall within the hour while a connection is sending.

Intake takes the API key, and Datadog does not revoke it on uninstall (the required
uninstallation text tells users to revoke it themselves), so intake alone never notices;
only the token endpoint does (``invalid_grant``). A connection *in use* (Datadog accepted
something for it since its last health check: delivered telemetry, a refreshed token) is
therefore checked again 59 minutes after its last check, by a run every minute: the
checks of one connection are 59-60 minutes apart, one token call each, and an uninstall
is noticed within the hour. Idle connections keep their daily check (``health``).

An intake 403 asks for a check of that connection at once (``check_connection``, run by
a task the delivery enqueues with the id only), unless one ran in the last 10 minutes.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..exceptions import InvalidClientError
from ..models import Connection, ConnectionStatus
from .health import HealthRunSummary, check_counted, check_health

#: A connection in use is checked again this long after its last check (the schedule runs
#: every minute, so checks are 59-60 minutes apart).
IN_USE_DUE_AFTER = timedelta(minutes=59)
#: An intake 403 asks for a check at once unless one ran this recently.
RECHECK_AFTER = timedelta(minutes=10)


def in_use_and_due(now: datetime) -> QuerySet[Connection]:
    """Connections Datadog accepted something for since their last check (or since they
    were created), whose last check is at least ``IN_USE_DUE_AFTER`` old; oldest first."""
    checkable = Connection.objects.not_ended().exclude(status__in=ConnectionStatus.unchecked())
    return (
        checkable.annotate(checked=Coalesce("health_checked_at", "created_at"))
        .filter(last_success_at__gt=F("checked"), checked__lte=now - IN_USE_DUE_AFTER)
        .order_by("checked", "pk")
    )


def run_in_use_health_checks(
    now: datetime | None = None, *, time_budget: float | None = None
) -> HealthRunSummary:
    """One run (every minute): check the connections in use that are due. Stops after
    ``time_budget`` seconds (the next run continues); a connection an overlapping run
    checked meanwhile is skipped."""
    now = now or timezone.now()
    due = list(in_use_and_due(now))
    summary = HealthRunSummary(due=len(due))
    started = time.monotonic()
    for connection in due:
        if time_budget is not None and time.monotonic() - started > time_budget:
            summary.stopped_early = True
            break
        if _checked_since(connection.pk, now - IN_USE_DUE_AFTER):
            continue
        if not check_counted(connection, summary):
            break
    return summary


def check_connection(connection_id: int) -> str:
    """Check one connection now (after an intake 403), unless it ended or was checked in
    the last ``RECHECK_AFTER``; what happened, for the task's result (no secrets)."""
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None or connection.has_ended:
        return "Not checked: no such connection, or it ended."
    if _checked_since(connection_id, timezone.now() - RECHECK_AFTER):
        return "Not checked: checked less than 10 minutes ago."
    try:
        return check_health(connection).message
    except InvalidClientError as exc:  # the alarm is raised; nothing else to do here
        return str(exc)


def _checked_since(connection_id: int, since: datetime) -> bool:
    return Connection.objects.filter(pk=connection_id, health_checked_at__gt=since).exists()
