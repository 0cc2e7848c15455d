"""Vendor-wide alarms: a problem with our own configuration (client credentials, scopes,
intake answers that only a bug explains), never a customer's connection. Shown as an
admin banner until cleared, logged, and signalled."""

from __future__ import annotations

import logging

from django.db.models import F
from django.utils import timezone

from .models import Alarm
from .signals import configuration_alarm

logger = logging.getLogger("django_datadog_partner")


def raise_alarm(code: str, message: str) -> None:
    """Record a vendor-side configuration problem: log, admin banner, signal."""
    logger.error("Datadog integration configuration alarm %s: %s", code, message)
    now = timezone.now()
    updated = Alarm.objects.filter(code=code).update(
        message=message, count=F("count") + 1, last_raised_at=now, cleared_at=None
    )
    if not updated:
        Alarm.objects.get_or_create(
            code=code, defaults={"message": message, "first_raised_at": now, "last_raised_at": now}
        )
    configuration_alarm.send(sender=Alarm, code=code, message=message)
