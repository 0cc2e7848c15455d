"""Per-site circuit breakers.

While a Datadog site keeps failing (5xx, timeouts, resets), every attempt there only spends
a worker thread and one of the row's retries. After ``BREAKER_THRESHOLD`` consecutive
failures the site's breaker opens: its rows wait, without an attempt counted, and other
sites keep the workers. After ``BREAKER_COOLDOWN`` one run sends a single probe; any answer
from the site closes the breaker and makes its rows due again, a failure keeps it open for
another cooldown. The state is in the database, so every worker sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from .conf import app_settings
from .models import OutboxEvent, OutboxStatus, SiteBreaker

logger = logging.getLogger("django_datadog_partner.breakers")

# Rows held by a breaker wait until its ``open_until``; closing it makes rows due up to this
# much later than that due at once (a row's own backoff beyond it is kept).
HOLD_MARGIN = timedelta(seconds=1)


@dataclass
class SiteTally:
    """What one delivery batch saw of a site, in order: whether it answered (which starts
    the count over) and the failures since."""

    reset: bool = False
    faults: int = 0
    detail: str = ""


@dataclass
class Gate:
    """What a delivery batch may send: ``held`` sites send nothing until the time given;
    ``probing`` sites (also held) send one request, whose answer decides the breaker;
    ``failures`` are the consecutive failures other runs already counted."""

    held: dict[str, datetime] = field(default_factory=dict)
    probing: set[str] = field(default_factory=set)
    failures: dict[str, int] = field(default_factory=dict)


def enabled() -> bool:
    return app_settings.BREAKER_THRESHOLD > 0


def gate(domains: Collection[str], now: datetime) -> Gate:
    """Open breakers among ``domains``; of those whose cooldown is over, take the probe
    (one run wins the conditional update) and hold the site for another cooldown."""
    result = Gate()
    if not enabled() or not domains:
        return result
    cooldown = timedelta(seconds=app_settings.BREAKER_COOLDOWN)
    troubled = Q(open_until__isnull=False) | Q(failures__gt=0)
    for breaker in SiteBreaker.objects.filter(troubled, domain__in=domains):
        if breaker.open_until is None:
            result.failures[breaker.domain] = breaker.failures
            continue
        if breaker.open_until > now:
            result.held[breaker.domain] = breaker.open_until
            continue
        until = now + cooldown
        taken = SiteBreaker.objects.filter(pk=breaker.pk, open_until=breaker.open_until).update(
            open_until=until
        )
        if taken:
            result.probing.add(breaker.domain)
            hold_rows(breaker.domain, until)
        result.held[breaker.domain] = until
    return result


def observe(tallies: Mapping[str, SiteTally], now: datetime) -> None:
    """Record a batch's results: an answer closes a site's breaker, failures count toward
    opening it."""
    if not enabled():
        return
    for domain, tally in tallies.items():
        if tally.reset:
            close(domain, now)
        if tally.faults:
            _fail(domain, tally, now)


def close(domain: str, now: datetime | None = None) -> bool:
    """Reset the site's count; if it was open, make its held rows due now. True if it was."""
    now = now or timezone.now()
    dirty = Q(failures__gt=0) | Q(open_until__isnull=False)
    breaker = SiteBreaker.objects.filter(dirty, domain=domain).first()
    if breaker is None:
        return False
    SiteBreaker.objects.filter(pk=breaker.pk).update(failures=0, open_until=None, opened_at=None)
    if breaker.open_until is None:
        return False
    due = pending_rows(domain).filter(
        next_attempt_at__gt=now, next_attempt_at__lte=breaker.open_until + HOLD_MARGIN
    )
    released = due.update(next_attempt_at=now)
    logger.warning(
        "Datadog site %s answers again: breaker closed, %d waiting rows due now.", domain, released
    )
    return True


def _fail(domain: str, tally: SiteTally, now: datetime) -> None:
    detail = tally.detail[:500]
    SiteBreaker.objects.get_or_create(domain=domain)
    SiteBreaker.objects.filter(domain=domain).update(
        failures=F("failures") + tally.faults, last_error=detail
    )
    until = now + timedelta(seconds=app_settings.BREAKER_COOLDOWN)
    opened = SiteBreaker.objects.filter(
        domain=domain, failures__gte=app_settings.BREAKER_THRESHOLD, open_until__isnull=True
    ).update(open_until=until, opened_at=now)
    if opened:
        hold_rows(domain, until)
        logger.warning(
            "Datadog site %s keeps failing (%s): breaker open, nothing is sent there for %gs.",
            domain,
            detail,
            app_settings.BREAKER_COOLDOWN,
        )


def hold_rows(domain: str, until: datetime) -> int:
    """Push the site's pending rows to ``until`` in one update, so runs in between do not
    claim them only to put them back."""
    return pending_rows(domain).filter(next_attempt_at__lt=until).update(next_attempt_at=until)


def pending_rows(domain: str) -> QuerySet[OutboxEvent]:
    return OutboxEvent.objects.filter(status=OutboxStatus.PENDING, connection__domain=domain)


def open_breakers() -> list[SiteBreaker]:
    """Breakers open now or waiting for their probe (status command, monitoring)."""
    return list(SiteBreaker.objects.filter(open_until__isnull=False))
