"""The heartbeat metric: one gauge point per active connection and ``HEARTBEAT_INTERVAL``,
queued by the sweeper, so each customer's Datadog sees the integration alive (the "metric
check" a Datadog listing names) even while nothing else is sent."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import outbox, payloads
from .conf import app_settings
from .models import Connection, OutboxKind

logger = logging.getLogger("django_datadog_partner.delivery")

SOURCE = "heartbeat"


def send_heartbeats(now: datetime | None = None) -> int:
    """Queue the heartbeat of every active connection whose last one is an interval old;
    returns how many were queued."""
    name = app_settings.HEARTBEAT_METRIC
    if not name:
        return 0
    now = now or timezone.now()
    try:
        payload = payloads.metric_series(name, 1, timestamp=now)
    except ValueError as exc:
        logger.error("HEARTBEAT_METRIC %r cannot be sent: %s", name, exc)
        return 0
    cutoff = now - timedelta(seconds=app_settings.HEARTBEAT_INTERVAL)
    due = Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lte=cutoff)
    with transaction.atomic():
        # Stamping the due connections with this sweep's time is what makes each heartbeat
        # belong to one sweep: an overlapping sweep finds them stamped and skips them.
        if not Connection.objects.active().filter(due).update(heartbeat_at=now):
            return 0
        stamped = Connection.objects.filter(heartbeat_at=now).only(
            "pk", "owner_content_type", "owner_object_id"
        )
        return outbox.write_for_connections(
            stamped, kind=OutboxKind.METRIC, payload=payload, source=SOURCE, now=now
        )
