"""Delivery of outbox rows to Datadog: claim with a lease, route, send, classify, record.

A run claims due rows with a conditional UPDATE that sets a lease (atomic on SQLite and
PostgreSQL; ``SKIP LOCKED`` where the database has it), so overlapping runs never share a
row and a killed worker's rows come back when the lease ends. HTTP happens on threads over
the shared session (``transmit.py``, paced by ``sender.py``); every database write happens
here, in the calling thread, and only on rows still holding this run's lease.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import breakers, payloads, transmit
from .client import POOL_SIZE
from .conf import app_settings
from .connections import mark_broken, raise_alarm
from .exceptions import CredentialsUnreadableError, InvalidSiteError
from .models import Connection, ConnectionStatus, OutboxEvent, OutboxKind, OutboxStatus
from .outcomes import NOT_PENDING, Recorder, Summary, held, max_age, update_each
from .regions import get_site
from .sender import Sender
from .signals import pre_event_send

logger = logging.getLogger("django_datadog_partner.delivery")

Progress = Callable[[Summary], None]

# What delivery reads of a claimed row (loading the rest costs a tenth of a loopback send).
CLAIMED_FIELDS = ("kind", "owner_content_type", "owner_object_id", "connection", "payload",
                  "source", "action", "prepared", "attempts", "event_time", "next_attempt_at",
                  "lease_until", "lease_token")  # fmt: skip


def lease_free(now: datetime) -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lt=now)


def due_rows(now: datetime) -> QuerySet[OutboxEvent]:
    pending = OutboxEvent.objects.filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now)
    return pending.filter(lease_free(now))


def claim(limit: int, *, run_started: datetime | None = None) -> tuple[str, list[OutboxEvent]]:
    """Lease up to ``limit`` due rows to a new token; returns (token, rows).

    With ``run_started``, rows retried since then are left alone: one attempt per row per
    run, even when full jitter made the retry due at once (the next run takes it).
    """
    now = timezone.now()
    token = uuid.uuid4().hex
    skip_locked = db_connection.features.has_select_for_update_skip_locked
    guard = transaction.atomic() if skip_locked else contextlib.nullcontext()
    with guard:
        candidates = due_rows(now).order_by("next_attempt_at")
        if run_started is not None:
            candidates = candidates.exclude(attempts__gt=0, next_attempt_at__gt=run_started)
        if skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            return token, []
        lease_until = now + timedelta(seconds=app_settings.LEASE_SECONDS)
        # On SQLite the SELECT above locks nothing: this conditional UPDATE (still pending,
        # lease free) is what makes a row belong to one run only. A row another run retried
        # in between may be claimed before its backoff ends; that is only an early attempt.
        OutboxEvent.objects.filter(pk__in=ids).exclude(status__in=NOT_PENDING).filter(
            lease_free(now)
        ).update(lease_until=lease_until, lease_token=token)
    return token, list(held(token, ids).only(*CLAIMED_FIELDS).order_by("pk"))


def drain(
    *, linger: float = 0.0, time_budget: float | None = None, progress: Progress | None = None
) -> Summary:
    """Deliver due rows until none are left (or ``time_budget`` seconds are spent).

    With ``linger``, the last claim happens no earlier than ``linger`` seconds after the
    start, so rows whose kick was coalesced into this run's are not left for the sweeper.
    """
    summary = Summary()
    started, run_started = time.monotonic(), timezone.now()
    with Sender(concurrency()) as sender:
        while time_budget is None or time.monotonic() - started <= time_budget:
            claimed_at = time.monotonic()
            token, rows = claim(app_settings.DELIVERY_BATCH_SIZE, run_started=run_started)
            if not rows:
                remaining = started + linger - time.monotonic()
                if remaining <= 0:
                    return summary
                time.sleep(remaining)
                continue
            released = summary.counts.get("released", 0)
            deliver(token, rows, summary, claimed_at=claimed_at, sender=sender)
            if progress is not None:
                progress(summary)
            if summary.counts.get("released", 0) > released:
                return summary  # too slow for the lease: the next run continues
    summary.add("budget_exhausted")
    return summary


def deliver(
    token: str,
    rows: list[OutboxEvent],
    summary: Summary,
    *,
    claimed_at: float | None = None,
    sender: Sender | None = None,
) -> None:
    """Route, check and send one claimed batch, then record every outcome.

    No request starts later than one HTTP timeout before the lease ends (counted from
    ``claimed_at``, a ``time.monotonic()`` value), so a run that is slower than its lease
    releases rows instead of racing the run that takes them over.
    """
    lease_end = (claimed_at or time.monotonic()) + app_settings.LEASE_SECONDS
    recorder = Recorder(token, summary)
    rows = _prepare(token, rows, recorder)
    connections = Connection.objects.in_bulk({row.connection_id for row in rows})
    recorder.connections = connections
    by_connection: dict[int, list[OutboxEvent]] = defaultdict(list)
    now = timezone.now()
    for row in rows:
        conn = connections.get(row.connection_id or 0)
        if conn is None:
            continue
        if _expired(row, now):
            recorder.finish([row], OutboxStatus.EXPIRED, "expired", "Older than Datadog accepts.")
        elif conn.status in (ConnectionStatus.REVOKING, ConnectionStatus.REVOKED):
            recorder.finish([row], OutboxStatus.CANCELLED, "cancelled", "Connection revoked.")
        elif conn.status != ConnectionStatus.ACTIVE:
            recorder.park([row], conn, f"connection_{conn.status}")
        elif conn.paused_until is not None and conn.paused_until > now:
            recorder.postpone([row], conn.paused_until)
        else:
            by_connection[conn.pk].append(row)
    targets = {}
    for conn_id, conn_rows in by_connection.items():
        target = _target(connections[conn_id], conn_rows, recorder)
        if target is not None:
            targets[conn_id] = target
    gate = breakers.gate({target.site.domain for target in targets.values()}, now)
    send_by = lease_end - sum(app_settings.HTTP_TIMEOUT)
    run = transmit.Run(send_by, trip_after=app_settings.BREAKER_THRESHOLD, faults=gate.failures)
    jobs: list[tuple[str, transmit.Job]] = []
    for conn_id, target in targets.items():
        domain, conn_rows = target.site.domain, by_connection[conn_id]
        if domain in gate.probing:  # one row, one request: its answer decides the breaker
            gate.probing.discard(domain)
            recorder.postpone(conn_rows[1:], gate.held[domain], "breaker_open")
            conn_rows = conn_rows[:1]
        elif domain in gate.held:
            recorder.postpone(conn_rows, gate.held[domain], "breaker_open")
            continue
        jobs.extend((domain, job) for job in _jobs(target, conn_rows))
    if sender is None:
        with Sender(concurrency()) as own:
            _run(jobs, run, own, rows, connections, recorder)
    else:
        _run(jobs, run, sender, rows, connections, recorder)
    recorder.flush()


def concurrency() -> int:
    """Most requests a run keeps in flight (``DELIVERY_CONCURRENCY``, at most the pool)."""
    return min(app_settings.DELIVERY_CONCURRENCY, POOL_SIZE)


def _jobs(target: transmit.Target, rows: list[OutboxEvent]) -> list[transmit.Job]:
    jobs: list[transmit.Job] = []
    batched: dict[str, list[transmit.Item]] = defaultdict(list)
    for row in rows:
        item = transmit.Item(row.pk, row.kind, row.payload)
        if row.kind == OutboxKind.EVENT:
            jobs.append(functools.partial(transmit.send_event, target, item))
        else:
            batched[row.kind].append(item)
    for kind, items in batched.items():
        limit = payloads.LOGS_MAX_BYTES if kind == OutboxKind.LOG else payloads.SERIES_MAX_BYTES
        count = payloads.LOGS_MAX_ENTRIES if kind == OutboxKind.LOG else len(items)
        sizes = [len(item.body()) for item in items]
        for group in payloads.pack(sizes, max_items=count, max_bytes=limit):
            batch = [items[i] for i in group]
            jobs.append(functools.partial(transmit.send_batch, target, kind, batch))
    return jobs


def _run(
    jobs: list[tuple[str, transmit.Job]],
    run: transmit.Run,
    sender: Sender,
    rows: list[OutboxEvent],
    connections: dict[int, Connection],
    recorder: Recorder,
) -> None:
    by_id = {row.pk: row for row in rows}
    for results in sender.run(jobs, run):
        for result in results:
            recorder.record(result, [by_id[i] for i in result.row_ids], connections)


@sensitive_variables()
def _target(
    conn: Connection, rows: list[OutboxEvent], recorder: Recorder
) -> transmit.Target | None:
    """The connection's site and decrypted key; a connection without a usable key is
    marked broken and its rows parked."""
    try:
        site = get_site(conn.domain)
    except InvalidSiteError as exc:
        raise_alarm("unknown_site", f"Connection {conn.pk}: {exc.reason}")
        recorder.park(rows, conn, "unknown_site")
        return None
    try:
        api_key = conn.api_key.reveal() if conn.api_key is not None else None
    except CredentialsUnreadableError:
        reason = "The API key cannot be decrypted with ENCRYPTION_KEYS."
        mark_broken(conn, ConnectionStatus.CREDENTIALS_UNREADABLE, reason, "decrypt_failed")
        recorder.park(rows, conn, "credentials_unreadable")
        return None
    if not api_key:
        mark_broken(conn, ConnectionStatus.KEY_MISSING, "No API key stored.", "key_missing")
        recorder.park(rows, conn, "key_missing")
        return None
    return transmit.Target(conn.pk, site, api_key, conn.api_key_fingerprint)


def _expired(row: OutboxEvent, now: datetime) -> bool:
    return (now - row.event_time).total_seconds() > max_age(row.kind)


def _prepare(token: str, rows: list[OutboxEvent], recorder: Recorder) -> list[OutboxEvent]:
    """First claim of a row: ``pre_event_send`` once, then route owner rows to connections.

    Routing turns the row into the one for the owner's first connection and adds a copy
    per further connection (revoked ones excluded), in one transaction; an owner with none
    closes the row as ``no_connection``. The stored payload is what every retry sends.
    """
    fresh = [row for row in rows if not row.prepared]
    if not fresh:
        return rows
    for row in fresh:
        try:
            pre_event_send.send(sender=OutboxEvent, outbox=row, payload=row.payload)
        except Exception:
            logger.exception("A pre_event_send receiver failed for outbox row %s.", row.pk)
        row.prepared = True
    targets = _owners_connections(row for row in fresh if row.connection_id is None)
    copies: list[OutboxEvent] = []
    unrouted: list[OutboxEvent] = []
    for row in fresh:
        if row.connection_id is not None:
            continue
        conns = targets.get((row.owner_content_type_id or 0, row.owner_object_id), [])
        if not conns:
            unrouted.append(row)
            continue
        row.connection_id = conns[0]
        copies.extend(_copy(row, conn_id) for conn_id in conns[1:])
    unrouted_ids = {row.pk for row in unrouted}
    by_connection: dict[int | None, list[int]] = defaultdict(list)
    for row in fresh:
        if row.pk not in unrouted_ids:
            by_connection[row.connection_id].append(row.pk)
    with transaction.atomic():
        for connection_id, ids in by_connection.items():
            OutboxEvent.objects.filter(pk__in=ids, lease_token=token).update(
                prepared=True, connection_id=connection_id
            )
        if pre_event_send.has_listeners(OutboxEvent):
            update_each(token, fresh, ["payload"], release=False)
        if copies:
            OutboxEvent.objects.bulk_create(copies)
    recorder.finish(unrouted, OutboxStatus.NO_CONNECTION, "no_connection", "", attempted=False)
    return [row for row in rows if row.pk not in unrouted_ids] + copies


def _owners_connections(rows: Iterable[OutboxEvent]) -> dict[tuple[int, str], list[int]]:
    wanted: dict[int, set[str]] = defaultdict(set)
    for row in rows:
        wanted[row.owner_content_type_id or 0].add(row.owner_object_id)
    found: dict[tuple[int, str], list[int]] = defaultdict(list)
    for content_type_id, object_ids in wanted.items():
        conns = (
            Connection.objects.filter(
                owner_content_type_id=content_type_id, owner_object_id__in=object_ids
            )
            .exclude(status__in=(ConnectionStatus.REVOKING, ConnectionStatus.REVOKED))
            .order_by("pk")
            .values_list("owner_object_id", "pk")
        )
        for object_id, pk in conns:
            found[(content_type_id, object_id)].append(pk)
    return found


def _copy(row: OutboxEvent, connection_id: int) -> OutboxEvent:
    return OutboxEvent(
        kind=row.kind, owner_content_type_id=row.owner_content_type_id,
        owner_object_id=row.owner_object_id, connection_id=connection_id, payload=row.payload,
        source=row.source, action=row.action, prepared=True, event_time=row.event_time,
        next_attempt_at=row.next_attempt_at,
        lease_until=row.lease_until, lease_token=row.lease_token,
    )  # fmt: skip


# --- operations used by admin, commands, the lifecycle and tasks --------------------------------


def cancel_pending_for_connection(connection: Connection) -> int:
    """Cancel every row still waiting for ``connection`` (it is being revoked).

    Rows in flight right now are cancelled too; their result is not recorded over it.
    Returns the number of rows cancelled.
    """
    return (
        OutboxEvent.objects.filter(connection=connection)
        .filter(status__in=(OutboxStatus.PENDING, OutboxStatus.PARKED))
        .update(
            status=OutboxStatus.CANCELLED,
            finished_at=timezone.now(),
            last_error_code="cancelled",
            lease_until=None,
            lease_token="",
        )
    )


REQUEUEABLE = (OutboxStatus.DEAD, OutboxStatus.PARKED, OutboxStatus.EXPIRED)


def requeue(rows: QuerySet[OutboxEvent]) -> int:
    """Send dead, parked or expired rows again: attempts reset, due now, age unchanged
    (a row past Datadog's horizon expires again instead of being sent)."""
    return rows.filter(status__in=REQUEUEABLE).update(
        status=OutboxStatus.PENDING, attempts=0, next_attempt_at=timezone.now(),
        finished_at=None, lease_until=None, lease_token="", last_error_code="", last_error="",
    )  # fmt: skip


FINAL = (
    OutboxStatus.DELIVERED, OutboxStatus.NO_CONNECTION, OutboxStatus.DEAD, OutboxStatus.EXPIRED,
    OutboxStatus.CANCELLED, OutboxStatus.PARKED,
)  # fmt: skip


def purge(older_than: timedelta) -> int:
    """Delete finished rows (and parked ones) created before ``older_than`` ago."""
    cutoff = timezone.now() - older_than
    deleted, _ = OutboxEvent.objects.filter(status__in=FINAL, created_at__lt=cutoff).delete()
    return deleted


def count_due() -> int:
    return due_rows(timezone.now()).count()


@dataclass(frozen=True)
class Backlog:
    """Outbox rows by status, and since when the oldest due row has waited unclaimed
    (growing while no worker drains the outbox: a stopped or wedged cluster)."""

    by_status: dict[str, int]
    oldest_due_since: datetime | None

    def waiting_seconds(self, now: datetime) -> float | None:
        if self.oldest_due_since is None:
            return None
        return max((now - self.oldest_due_since).total_seconds(), 0.0)


def backlog(now: datetime | None = None, statuses: Iterable[str] | None = None) -> Backlog:
    """Counts by status (only ``statuses`` if given: finished rows are most of the table,
    the others are read off the status index) and the oldest due row."""
    now = now or timezone.now()
    rows = OutboxEvent.objects.order_by()
    if statuses is not None:
        rows = rows.filter(status__in=list(statuses))
    counted = rows.values_list("status").annotate(n=Count("pk"))
    oldest = due_rows(now).aggregate(oldest=Min("next_attempt_at"))["oldest"]
    return Backlog(dict(counted), oldest)
