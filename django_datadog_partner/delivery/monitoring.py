"""The outbox's health for the vendor's own monitoring: a log line and ``outbox_measured``.

DLQ size (``dead``), parked rows and the age of the oldest due row are what tell a vendor
that telemetry stopped flowing; the sweeper reports them every minute so an alert can fire
on them without polling the database.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from ..models import OutboxEvent, OutboxStatus
from ..outbox import backlog
from ..signals import outbox_measured
from .breaker import open_breakers

logger = logging.getLogger("django_datadog_partner.monitoring")

MEASURED = (OutboxStatus.PENDING, OutboxStatus.PARKED, OutboxStatus.DEAD)


def report_backlog() -> None:
    now = timezone.now()
    measured = backlog(now, statuses=MEASURED)
    by_status = {status.value: measured.by_status.get(status.value, 0) for status in MEASURED}
    oldest = measured.waiting_seconds(now)
    tripped = [breaker.domain for breaker in open_breakers()]
    logger.info(
        "Outbox: %d pending, %d parked, %d dead; oldest due row waited %s; open breakers: %s.",
        by_status["pending"],
        by_status["parked"],
        by_status["dead"],
        "-" if oldest is None else f"{oldest:.0f} s",
        ", ".join(tripped) or "none",
        extra={"outbox": {**by_status, "oldest_due_seconds": oldest, "open_breakers": tripped}},
    )
    outbox_measured.send(
        sender=OutboxEvent, by_status=by_status, oldest_due_seconds=oldest, open_breakers=tripped
    )
