"""Per-site circuit breakers: the whole feature, behind one object per delivery batch.

While a Datadog site keeps failing (5xx, timeouts, resets), every attempt there only spends
a worker thread and one of the row's retries. After ``BREAKER_THRESHOLD`` consecutive
failures the site's breaker opens: its rows wait, without an attempt counted, and other
sites keep the workers. After ``BREAKER_COOLDOWN`` one run sends a single probe; any answer
from the site closes the breaker and makes its rows due again, a failure keeps it open for
another cooldown. The state is in the database, so every worker sees it.

A breaker holds only the connections it saw fail. Each tenant's organisation answers on its
own, and one organisation's trouble (or a tenant able to make their own organisation
fail) must not stall every other tenant of the site: while it is open, a connection that
has not failed since the site last answered sends its first row as a probe of its own. In
an outage that costs each connection one attempt per cooldown; when only one organisation
fails, the others' answers close the breaker at once.

A batch asks ``SiteBreakers`` four things: which rows of a site it may send (``admit``),
whether a site tripped during the batch (``tripped``) or is failing without having answered
since (``failing``, which the pacing uses to give it one request at a time), and it reports
every attempt (``note``); ``save()`` writes what the batch saw.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from django.db.models import F, Q
from django.utils import timezone

from .. import outbox
from ..conf import app_settings
from ..models import SiteBreaker

logger = logging.getLogger("django_datadog_partner.breakers")

# Rows held by a breaker wait until its ``open_until``; closing it makes rows due up to this
# much later than that due at once (a row's own backoff beyond it is kept).
HOLD_MARGIN = timedelta(seconds=1)

Row = TypeVar("Row")

#: Connections a breaker remembers by id; past this many, it holds the whole site.
MAX_FAILING_CONNECTIONS = 200


class Attempt(Protocol):
    """What the breaker reads of one attempt's result."""

    @property
    def site_fault(self) -> bool: ...

    @property
    def site_answered(self) -> bool: ...

    detail: str
    code: str


@dataclass
class _Tally:
    """What one batch saw of a site, in order: whether it answered (which starts the count
    over) and the failures since."""

    reset: bool = False
    faults: int = 0
    detail: str = ""
    connections: set[int] = field(default_factory=set)


def enabled() -> bool:
    return app_settings.BREAKER_THRESHOLD > 0


class SiteBreakers:
    """The breakers of the sites one delivery batch sends to."""

    def __init__(self, domains: Collection[str], now: datetime) -> None:
        self.now = now
        self.trip_after = app_settings.BREAKER_THRESHOLD
        self.held: dict[str, datetime] = {}
        self._probing: set[str] = set()
        self._faults: dict[str, int] = {}  # consecutive failures, other runs' included
        # Connections that failed since the site last answered; None: too many, all of them.
        self._failed: dict[str, set[int] | None] = {}
        self._tallies: dict[str, _Tally] = {}
        self._lock = threading.Lock()
        self._watched: set[str] = set()
        self.watch(domains)

    def watch(self, domains: Collection[str]) -> None:
        """Load the breakers of ``domains`` not watched yet (a batch that grows may reach
        more sites), and again those of sites held until a time now past (a batch that
        grows past a cooldown: the breaker may have closed, or its probe is due)."""
        over = {domain for domain, until in self.held.items() if until <= self.now}
        with self._lock:
            for domain in over:
                del self.held[domain]
                self._probing.discard(domain)
                self._failed.pop(domain, None)
                self._faults.pop(domain, None)
        new = (set(domains) - self._watched) | over
        self._watched |= new
        if enabled() and new:
            self._load(new)

    def _load(self, domains: Collection[str]) -> None:
        """Open breakers among ``domains``; of those whose cooldown is over, take the probe
        (one run wins the conditional update) and hold the site for another cooldown."""
        cooldown = timedelta(seconds=app_settings.BREAKER_COOLDOWN)
        troubled = Q(open_until__isnull=False) | Q(failures__gt=0)
        for breaker in SiteBreaker.objects.filter(troubled, domain__in=domains):
            self._failed[breaker.domain] = _failed_set(breaker.failing_connections)
            if breaker.open_until is None:
                self._faults[breaker.domain] = breaker.failures
                continue
            if breaker.open_until > self.now:
                self.held[breaker.domain] = breaker.open_until
                continue
            until = self.now + cooldown
            taken = SiteBreaker.objects.filter(pk=breaker.pk, open_until=breaker.open_until).update(
                open_until=until
            )
            if taken:
                self._probing.add(breaker.domain)
                _hold_rows(breaker.domain, until, self._failed[breaker.domain])
            self.held[breaker.domain] = until

    def admit(
        self, domain: str, connection_id: int, rows: Sequence[Row]
    ) -> tuple[Sequence[Row], Sequence[Row]]:
        """(rows to send, rows to hold until ``held[domain]``) of one connection. A probing
        site sends one row, whose answer decides the breaker; an open one sends none of a
        connection it saw fail, and one row of any other."""
        if domain in self._probing:
            self._probing.discard(domain)
            return rows[:1], rows[1:]
        if domain not in self.held:
            return rows, ()
        if self._saw_fail(domain, connection_id):
            return (), rows
        with self._lock:
            self._failed.setdefault(domain, set())
            failed = self._failed[domain]
            if failed is not None:
                failed.add(connection_id)  # its probe is sent: no second one in this run
        return rows[:1], rows[1:]

    def tripped(self, domain: str, connection_id: int) -> bool:
        """Whether to stop sending ``connection_id``'s rows to ``domain`` in this run."""
        if not self.trip_after or self._faults.get(domain, 0) < self.trip_after:
            return False
        return self._saw_fail(domain, connection_id)

    def _saw_fail(self, domain: str, connection_id: int) -> bool:
        failed = self._failed.get(domain, set())
        return failed is None or connection_id in failed

    def failing(self, domain: str) -> bool:
        """The site failed and has not answered since."""
        return self._faults.get(domain, 0) > 0

    def note(self, domain: str, connection_id: int, attempt: Attempt) -> None:
        """Count one attempt's result (called from the sending threads)."""
        if not (attempt.site_fault or attempt.site_answered):
            return
        with self._lock:
            tally = self._tallies.setdefault(domain, _Tally())
            if attempt.site_answered:
                self._faults[domain] = 0
                self._failed[domain] = set()
                tally.reset, tally.faults = True, 0
                tally.connections.clear()
            else:
                self._faults[domain] = self._faults.get(domain, 0) + 1
                tally.faults += 1
                tally.detail = attempt.detail or attempt.code
                tally.connections.add(connection_id)
                failed = self._failed.setdefault(domain, set())
                if failed is not None:
                    failed.add(connection_id)

    def save(self) -> None:
        """An answer closes a site's breaker; failures count toward opening it. What is
        saved is not counted again by a later call (a batch that grows saves as it goes)."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
        if not enabled():
            return
        for domain, tally in tallies.items():
            if tally.reset:
                close(domain, self.now)
            if tally.faults:
                _fail(domain, tally, self.now)


def close(domain: str, now: datetime | None = None) -> bool:
    """Reset the site's count; if it was open, make its held rows due now. True if it was."""
    now = now or timezone.now()
    dirty = Q(failures__gt=0) | Q(open_until__isnull=False)
    breaker = SiteBreaker.objects.filter(dirty, domain=domain).first()
    if breaker is None:
        return False
    SiteBreaker.objects.filter(pk=breaker.pk).update(
        failures=0, open_until=None, opened_at=None, failing_connections=[]
    )
    if breaker.open_until is None:
        return False
    due = outbox.pending_for_site(domain).filter(
        next_attempt_at__gt=now, next_attempt_at__lte=breaker.open_until + HOLD_MARGIN
    )
    released = due.update(next_attempt_at=now)
    logger.warning(
        "Datadog site %s answers again: breaker closed, %d waiting rows due now.", domain, released
    )
    return True


def _fail(domain: str, tally: _Tally, now: datetime) -> None:
    detail = tally.detail[:500]
    breaker, _ = SiteBreaker.objects.get_or_create(domain=domain)
    # Read, merged and written without a lock: a connection lost to a race only gets one
    # more probe.
    failed = _failed_set(breaker.failing_connections)
    stored = None if failed is None else sorted(failed | tally.connections)
    if stored is not None and len(stored) > MAX_FAILING_CONNECTIONS:
        stored = None
    SiteBreaker.objects.filter(domain=domain).update(
        failures=F("failures") + tally.faults,
        last_error=detail,
        failing_connections=stored,
    )
    until = now + timedelta(seconds=app_settings.BREAKER_COOLDOWN)
    opened = SiteBreaker.objects.filter(
        domain=domain, failures__gte=app_settings.BREAKER_THRESHOLD, open_until__isnull=True
    ).update(open_until=until, opened_at=now)
    if opened:
        _hold_rows(domain, until, _failed_set(stored))
        logger.warning(
            "Datadog site %s keeps failing (%s): breaker open, nothing is sent there for %gs.",
            domain,
            detail,
            app_settings.BREAKER_COOLDOWN,
        )


def _failed_set(stored: list[int] | None) -> set[int] | None:
    return None if stored is None else set(stored)


def _hold_rows(domain: str, until: datetime, connections: set[int] | None) -> int:
    """Push the pending rows of the site's failed ``connections`` (None: all) to ``until``
    in one update, so runs in between do not claim them only to put them back."""
    rows = outbox.pending_for_site(domain).filter(next_attempt_at__lt=until)
    if connections is not None:
        rows = rows.filter(connection_id__in=connections)
    return rows.update(next_attempt_at=until)


def open_breakers() -> list[SiteBreaker]:
    """Breakers open now or waiting for their probe (status report, monitoring)."""
    return list(SiteBreaker.objects.filter(open_until__isnull=False))
