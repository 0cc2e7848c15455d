"""Delivery of outbox rows to Datadog: claim with a lease, route, send, classify, record."""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from .models import Connection, OutboxEvent, OutboxStatus


def cancel_pending_for_connection(connection: Connection) -> int:
    """Cancel every row still waiting for ``connection`` (it is being revoked).

    Rows in flight right now are cancelled too; their result is not recorded over it.
    Returns the number of rows cancelled.
    """
    return (
        OutboxEvent.objects.filter(connection=connection)
        .filter(Q(status=OutboxStatus.PENDING) | Q(status=OutboxStatus.PARKED))
        .update(
            status=OutboxStatus.CANCELLED,
            finished_at=timezone.now(),
            last_error_code="cancelled",
            lease_until=None,
            lease_token="",
        )
    )
