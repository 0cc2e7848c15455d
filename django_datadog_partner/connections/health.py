"""Health checks: notice uninstalls, revoked API keys and deleted owners, even when idle.

No uninstall webhook exists, so each connection is checked once a day: its token is
refreshed (an uninstall answers ``invalid_grant``) and its API key validated with
``GET /api/v1/validate`` (a revoked key answers 403). The scheduled run is hourly and
takes a slice of the connections that are due, so the work is spread over the day.
Connections in use are checked hourly instead (``uninstalls``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone

from ..client import DatadogClient
from ..exceptions import (
    DatadogPartnerError,
    InvalidClientError,
    RateLimitedError,
    RetryableError,
)
from ..models import ENDED_STATUSES, Connection, ConnectionStatus
from ..status import API_KEY_REJECTED_REASON, mark_broken, reveal, set_status
from .api_keys import key_recovery
from .revoke import revoke
from .rows import record_error
from .tokens import refresh

logger = logging.getLogger("django_datadog_partner")

#: A connection is due again this long after its last check (a little under a day, so the
#: hourly runs do not drift later every day).
DUE_AFTER = timedelta(hours=23)
#: Scheduled runs per day (the schedule is hourly).
RUNS_PER_DAY = 24
#: Each run may take this many times its share, so a backlog after downtime clears.
CATCH_UP_FACTOR = 2

NO_KEY_REASON = "The token works but no API key is stored."


@dataclass(frozen=True)
class HealthReport:
    """The outcome of one check; ``message`` is written for people."""

    connection_id: int
    healthy: bool
    status: str
    message: str


@dataclass
class HealthRunSummary:
    """What one scheduled run did (returned by the task, so no secrets here)."""

    due: int = 0
    checked: int = 0
    healthy: int = 0
    unhealthy: int = 0
    stopped_early: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "due": self.due,
            "checked": self.checked,
            "healthy": self.healthy,
            "unhealthy": self.unhealthy,
            "stopped_early": self.stopped_early,
        }


def check_health(connection: Connection) -> HealthReport:
    """Check one connection now: owner still exists, token refreshes, API key accepted.

    Raises ``InvalidClientError`` (our credentials are wrong; every connection would fail
    the same way). Every other problem is reported, and recorded on the connection when
    it is definitive; timeouts, 5xx and 429 never change its status.
    """
    owner_matters = not connection.has_ended
    if owner_matters and not owner_exists(connection):
        outcome = revoke(connection, reason="Its owner was deleted.")
        return _report(connection, False, f"Its owner was deleted. {outcome.message}")
    if connection.status in ConnectionStatus.unchecked():
        _mark_checked(connection)
        return _report(connection, False, f"Not checked: {connection.get_status_display()}.")
    try:
        if connection.status == ConnectionStatus.CREDENTIALS_UNREADABLE:
            _recover_if_readable(connection)
        refresh(connection, force=True)
        return _check_api_key(connection)
    except InvalidClientError:
        raise
    except (RetryableError, RateLimitedError) as exc:
        return _report(connection, False, f"Datadog could not be checked now: {exc}")
    except DatadogPartnerError as exc:
        return _report(connection, False, str(exc))
    finally:
        _mark_checked(connection)


def run_scheduled_health_checks(now: datetime | None = None) -> HealthRunSummary:
    """One hourly slice of the daily health checks (oldest check first)."""
    now = now or timezone.now()
    checkable = Connection.objects.exclude(status__in=ENDED_STATUSES)
    limit = math.ceil(checkable.count() / RUNS_PER_DAY) * CATCH_UP_FACTOR
    due = due_for_check(checkable, now - DUE_AFTER, limit)
    summary = HealthRunSummary(due=len(due))
    for connection in due:
        if not check_counted(connection, summary):
            break
    return summary


def due_for_check(
    checkable: QuerySet[Connection], cutoff: datetime, limit: int
) -> list[Connection]:
    """Never-checked connections first, then the oldest checks up to ``cutoff``, by id.

    Two range reads of the partial ``datadog_partner_conn_checked`` index (checked time,
    id), each in index order; one ``ORDER BY ... NULLS FIRST`` over both would sort the
    whole table on PostgreSQL, whose index keeps NULLs last.
    """
    oldest_first = checkable.order_by("health_checked_at", "pk")
    due = list(oldest_first.filter(health_checked_at__isnull=True)[:limit])
    if len(due) < limit:
        due += oldest_first.filter(health_checked_at__lte=cutoff)[: limit - len(due)]
    return due


def check_counted(connection: Connection, summary: HealthRunSummary) -> bool:
    """Check one connection of a run and count it; False when the run must stop: our own
    credentials are wrong, and checking the others would only repeat it."""
    try:
        report = check_health(connection)
    except InvalidClientError:
        summary.stopped_early = True
        return False
    summary.checked += 1
    if report.healthy:
        summary.healthy += 1
    else:
        summary.unhealthy += 1
    return True


def owner_exists(connection: Connection) -> bool:
    """Whether the host object owning the connection still exists (generic FKs don't cascade)."""
    model = connection.owner_content_type.model_class()
    if model is None:
        return False
    try:
        pk = model._meta.pk.to_python(connection.owner_object_id)
    except ValidationError:
        return False
    return model._base_manager.filter(pk=pk).exists()


def _check_api_key(connection: Connection) -> HealthReport:
    if connection.api_key is None:
        if connection.status != ConnectionStatus.KEY_MISSING:  # else keep the connect reason
            mark_broken(connection, ConnectionStatus.KEY_MISSING, NO_KEY_REASON, "key_missing")
        message = " ".join(filter(None, (connection.status_reason, key_recovery(connection))))
        return _report(connection, False, message)
    valid = DatadogClient(connection.domain).validate_api_key(
        reveal(connection, connection.api_key)
    )
    if valid is None:
        record_error(connection, "validate_unconfirmed")
        return _report(
            connection, False, "Datadog could not confirm the API key now; checked again later."
        )
    if not valid:
        mark_broken(
            connection,
            ConnectionStatus.API_KEY_REJECTED,
            API_KEY_REJECTED_REASON,
            "api_key_rejected",
        )
        return _report(connection, False, connection.status_reason)
    if connection.status in (ConnectionStatus.API_KEY_REJECTED, ConnectionStatus.KEY_MISSING):
        set_status(connection, ConnectionStatus.ACTIVE, "Datadog accepts the API key.")
    return _report(
        connection, True, "Healthy: the token refreshes and Datadog accepts the API key."
    )


def _recover_if_readable(connection: Connection) -> None:
    """After an ENCRYPTION_KEYS fix, a connection whose secrets decrypt again is active again."""
    for secret in (connection.access_token, connection.refresh_token, connection.api_key):
        if secret is not None:
            secret.reveal()  # raises CredentialsUnreadableError while still unreadable
    set_status(connection, ConnectionStatus.ACTIVE, "Its stored secrets can be decrypted again.")


def _mark_checked(connection: Connection) -> None:
    now = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(health_checked_at=now)
    connection.health_checked_at = now


def _report(connection: Connection, healthy: bool, message: str) -> HealthReport:
    if not healthy:
        logger.info("Datadog connection %s health check: %s", connection.pk, message)
    return HealthReport(connection.pk, healthy, connection.status, message)
