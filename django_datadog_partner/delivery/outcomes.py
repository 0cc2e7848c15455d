"""What a delivery run decides after an attempt, and how it is recorded: backoff, rate-limit
pauses, and the batched writes of every outcome (only on rows that still hold the run's
lease and are still pending, so a revoke's cancellation wins)."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

from .. import outbox
from ..alarms import raise_alarm
from ..conf import app_settings
from ..models import Connection, ConnectionStatus, OutboxEvent, OutboxKind, OutboxStatus
from ..signals import event_failed, event_sent
from ..status import API_KEY_REJECTED_REASON, mark_broken
from . import kick, transmit

logger = logging.getLogger("django_datadog_partner.delivery")

ERROR_LIMIT = 2000
RETRY_FIELDS = ["attempts", "next_attempt_at", "last_error_code", "last_error", "payload"]

_rng = random.Random()


@dataclass
class Summary:
    """Counts of what a run did, by outcome."""

    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, outcome: str, n: int = 1) -> None:
        if n:
            self.counts[outcome] += n

    def __str__(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items())) or "nothing due"


def backoff_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(n-1))]."""
    ceiling = min(app_settings.BACKOFF_CAP, app_settings.BACKOFF_BASE * 2 ** max(attempts - 1, 0))
    return (rng or _rng).uniform(0, ceiling)


def retry_at(attempts: int, now: datetime, pause_for: float | None) -> datetime:
    """When a row that failed its ``attempts``-th attempt is tried next: after the
    rate-limit pause (plus up to a second of jitter so paused rows do not stampede) or
    after its backoff."""
    if pause_for is not None:
        return now + timedelta(seconds=pause_for + _rng.uniform(0, 1))
    return now + timedelta(seconds=backoff_delay(attempts))


def pause_key(fingerprint: str, connection_id: int, until: datetime) -> None:
    """After a 429: every connection using this API key waits until ``until`` (all workers
    read ``Connection.paused_until``), and their pending rows are pushed back to it."""
    match = (
        Q(pk=connection_id) | Q(api_key_fingerprint=fingerprint)
        if fingerprint
        else Q(pk=connection_id)
    )
    conn_ids = list(Connection.objects.filter(match).values_list("pk", flat=True))
    Connection.objects.filter(pk__in=conn_ids).filter(
        Q(paused_until__isnull=True) | Q(paused_until__lt=until)
    ).update(paused_until=until)
    outbox.postpone_pending(conn_ids, until)


def max_age(kind: str) -> float:
    """Seconds after ``event_time`` past which Datadog would refuse the item."""
    if kind == OutboxKind.METRIC:
        return app_settings.METRIC_MAX_AGE
    if kind == OutboxKind.CHECK:
        return app_settings.SERVICE_CHECK_MAX_AGE
    return app_settings.EVENT_MAX_AGE


def touch_success(connection_ids: Iterable[int]) -> None:
    ids = list(connection_ids)
    if ids:
        Connection.objects.filter(pk__in=ids).update(last_success_at=timezone.now())


class Recorder:
    """Collects outcomes for one claimed batch; ``flush()`` writes them all."""

    def __init__(self, token: str, summary: Summary) -> None:
        self.token = token
        self.summary = summary
        self.now = timezone.now()
        self.connections: dict[int, Connection] = {}
        self._final: dict[tuple[str, str, str, bool], list[OutboxEvent]] = defaultdict(list)
        self._retry: list[OutboxEvent] = []
        self._postponed: list[OutboxEvent] = []
        self._released: list[OutboxEvent] = []
        self._rewritten: list[OutboxEvent] = []
        self._succeeded: set[int] = set()
        self._rejected: dict[int, Connection] = {}
        self._forbidden: set[int] = set()
        self._pauses: dict[int, tuple[str, datetime]] = {}
        self._alarms: dict[str, str] = {}
        self._signals: list[tuple[Signal, dict[str, Any]]] = []
        self._listened: dict[Signal, bool] = {}

    # --- collecting ---------------------------------------------------------------------------

    def finish(
        self,
        rows: list[OutboxEvent],
        status: str,
        code: str,
        detail: str,
        *,
        attempted: bool = True,
    ) -> None:
        if rows:
            self._final[(status, code, detail[:ERROR_LIMIT], attempted)].extend(rows)
            self.summary.add(status, len(rows))
        if status in (OutboxStatus.DEAD, OutboxStatus.EXPIRED, OutboxStatus.PARKED):
            for row in rows:
                self._signal(event_failed, row, reason=code or status)

    def park(self, rows: list[OutboxEvent], conn: Connection, code: str, detail: str = "") -> None:
        self.finish(rows, OutboxStatus.PARKED, code, detail or f"Connection is {conn.status}.",
                    attempted=False)  # fmt: skip

    def postpone(self, rows: list[OutboxEvent], until: datetime, outcome: str = "paused") -> None:
        """Not attempted: due again at ``until`` (a rate-limit pause or an open breaker)."""
        for row in rows:
            row.next_attempt_at = until
        self._postponed.extend(rows)
        self.summary.add(outcome, len(rows))

    def record(
        self, result: transmit.Result, rows: list[OutboxEvent], connections: dict[int, Connection]
    ) -> None:
        if result.new_payload is not None:
            for row in rows:
                row.payload = result.new_payload
            self._rewritten.extend(rows)
        if result.code == "http_403" and rows:  # a revoked key, or an uninstall: check now
            self._forbidden.add(rows[0].connection_id or 0)
        if result.verdict == transmit.DELIVERED:
            if result.code == transmit.ACCEPTED_WITH_ERRORS:
                self._accepted_with_errors(result, rows)
            else:
                self.finish(rows, OutboxStatus.DELIVERED, "", "")
            for row in rows:
                self._succeeded.add(row.connection_id or 0)
                self._signal(event_sent, row)
        elif result.verdict == transmit.DEAD:
            self.finish(rows, OutboxStatus.DEAD, result.code, result.detail)
            if result.alarm:
                self._alarms[f"intake_{result.code}"] = (
                    f"Datadog's intake answered {result.code} ({result.detail}). This is a bug "
                    "or a configuration error on our side, not the customer's."
                )
        elif result.verdict == transmit.HELD:
            # Not attempted: an open breaker, or this process out of descriptors (said
            # once per run, whose summary counts them; an attempt each would be spent on
            # our own limit).
            if result.code == "no_descriptors" and not self.summary.counts.get(result.code):
                logger.warning("%s", result.detail)
            cooldown = timedelta(seconds=app_settings.BREAKER_COOLDOWN)
            self.postpone(rows, self.now + cooldown, result.code)
        elif result.verdict == transmit.RELEASED:
            self._released.extend(rows)
            self.summary.add("released", len(rows))
        elif result.verdict == transmit.REJECTED:
            conn = connections[rows[0].connection_id or 0]
            self._rejected[conn.pk] = conn
            self.park(rows, conn, "api_key_rejected", result.detail)
        else:
            self._schedule_retry(result, rows, connections)

    def _accepted_with_errors(self, result: transmit.Result, rows: list[OutboxEvent]) -> None:
        """Datadog took the request but listed errors (points it dropped, for example): the
        rows are delivered, the errors kept on them and logged."""
        self.finish(rows, OutboxStatus.DELIVERED, result.code, result.detail)
        self.summary.add("delivered_with_errors", len(rows))
        logger.warning(
            "Datadog accepted %d outbox rows of connection %s with errors: %s",
            len(rows), rows[0].connection_id, result.detail,
        )  # fmt: skip

    def _schedule_retry(
        self, result: transmit.Result, rows: list[OutboxEvent], connections: dict[int, Connection]
    ) -> None:
        for row in rows:
            when = retry_at(row.attempts + 1, self.now, result.pause_for)
            if (when - row.event_time).total_seconds() > max_age(row.kind):
                self.finish([row], OutboxStatus.EXPIRED, "expired", result.detail or result.code)
                continue
            row.attempts += 1
            row.next_attempt_at = when
            row.last_error_code, row.last_error = result.code, result.detail[:ERROR_LIMIT]
            self._retry.append(row)
            self.summary.add("retry")
        if result.pause_for is not None and rows:
            conn = connections[rows[0].connection_id or 0]
            until = self.now + timedelta(seconds=result.pause_for)
            self._pauses[conn.pk] = (conn.api_key_fingerprint, until)
            logger.warning(
                "Datadog rate-limited connection %s; its API key pauses for %.0fs: %s",
                conn.pk, result.pause_for, result.detail,
            )  # fmt: skip

    def _signal(self, signal: Signal, row: OutboxEvent, **kwargs: Any) -> None:
        if signal not in self._listened:  # asked once per batch, not once per row
            self._listened[signal] = signal.has_listeners(OutboxEvent)
        if self._listened[signal]:
            conn = self.connections.get(row.connection_id or 0)
            self._signals.append((signal, {"outbox": row, "connection": conn, **kwargs}))

    # --- writing ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything collected so far: the rows' outcomes, then what concerns
        connections (rejected keys, rate-limit pauses, alarms, last success, health
        checks), so rows claimed after it see the connections as they now are."""
        self.flush_rows()
        self._flush_connections()

    def flush_rows(self) -> None:
        """Write the outcomes collected so far on their rows (and send their signals), so
        a worker killed later re-sends only what it had not recorded yet."""
        if self._rewritten:
            outbox.update_each(self.token, self._rewritten, ["payload"], release=False)
        for (status, code, detail, attempted), rows in self._final.items():
            ids = [row.pk for row in rows]
            outbox.finish_held(
                self.token, ids, status=status, at=self.now, code=code, detail=detail,
                attempted=attempted,
            )  # fmt: skip
        if self._retry:
            outbox.update_each(self.token, self._retry, RETRY_FIELDS)
        if self._released:
            outbox.held(self.token, [row.pk for row in self._released]).update(
                lease_until=None, lease_token=""
            )
        if self._postponed:
            outbox.update_each(self.token, self._postponed, ["next_attempt_at"])
        signals = self._signals
        self._rewritten, self._final, self._retry = [], defaultdict(list), []
        self._released, self._postponed, self._signals = [], [], []
        for signal, kwargs in signals:
            signal.send(sender=OutboxEvent, **kwargs)

    def _flush_connections(self) -> None:
        rejected, pauses, alarms = self._rejected, self._pauses, self._alarms
        succeeded, forbidden = self._succeeded - {0}, self._forbidden - {0}
        self._rejected, self._pauses, self._alarms = {}, {}, {}
        self._succeeded, self._forbidden = set(), set()
        for conn in rejected.values():
            mark_broken(
                conn, ConnectionStatus.API_KEY_REJECTED, API_KEY_REJECTED_REASON, "http_403"
            )
            outbox.park_pending_for_connection(conn, "api_key_rejected", self.now)
        for conn_id, (fingerprint, until) in pauses.items():
            pause_key(fingerprint, conn_id, until)
        for code, message in alarms.items():
            raise_alarm(code, message)
        touch_success(succeeded)
        if forbidden:
            kick.enqueue_health_checks(sorted(forbidden))
