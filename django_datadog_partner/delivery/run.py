"""A delivery run: claim due rows with a lease, route them, send, record the outcomes.

A run claims due rows with a conditional UPDATE that sets a lease (atomic on SQLite and
PostgreSQL; ``SKIP LOCKED`` where the database has it), so overlapping runs never share a
row and a killed worker's rows come back when the lease ends. HTTP happens on one
multiplexer driven by the calling thread (``transmit`` jobs, paced by ``pacing``, made by
``inflight``); the outcomes are written by the calling thread (``outcomes.Recorder``), only
on rows still holding this run's lease. While the round trip dominates, a batch (``Batch``)
grows: more rows are claimed to its lease as its last requests start, so no round trip is
spent waiting between two claims. (Over 300 lines: claiming, the batch and the drain loop
share the lease, the clock and the sender, and split apart they would pass all three.)
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import leases, outbox, packing, payloads
from ..alarms import raise_alarm
from ..conf import app_settings
from ..descriptors import POOL_SIZE, socket_budget
from ..exceptions import CredentialsUnreadableError, InvalidSiteError
from ..models import Connection, ConnectionStatus, OutboxEvent, OutboxKind, OutboxStatus
from ..regions import get_site
from ..status import mark_broken, reveal
from . import routing, sending, transmit
from .breaker import SiteBreakers
from .outcomes import Recorder, Summary, max_age
from .pacing import Sender

Progress = Callable[[Summary], None]

# What delivery reads of a claimed row (loading the rest costs a tenth of a loopback send).
CLAIMED_FIELDS = ("kind", "owner_content_type", "owner_object_id", "connection", "payload",
                  "source", "action", "prepared", "attempts", "event_time", "next_attempt_at",
                  "lease_until", "lease_token")  # fmt: skip


def claim(
    limit: int, *, run_started: datetime | None = None, token: str | None = None
) -> tuple[str, list[OutboxEvent]]:
    """Lease up to ``limit`` due rows to ``token`` (a new one by default); returns (token,
    rows).

    With ``run_started``, rows retried since then are left alone: one attempt per row per
    run, even when full jitter made the retry due at once (the next run takes it). When the
    claim holds logs, metric points or service checks, more due rows of those kinds are
    claimed too, so their requests fill Datadog's limits whatever ``limit`` is.
    """
    now = timezone.now()
    token = token or uuid.uuid4().hex
    rows = _lease(token, leases.Due(_due, now, run_started), limit, now)
    if not rows:
        return token, []
    return token, rows + _fill_batches(token, rows, now, run_started)


#: Rows of each batched kind a claim holds at least, when it holds one: a full request.
FILL: dict[str, int] = {
    OutboxKind.LOG: payloads.LOGS_MAX_ENTRIES,
    OutboxKind.METRIC: payloads.SERIES_MAX_POINTS,
    OutboxKind.CHECK: payloads.CHECKS_MAX_ENTRIES,
}
#: The top-up reads at most this many due rows per row it wants (in due order), so a
#: backlog of other kinds costs a bounded read, not a scan of every due row.
FILL_WINDOW = 2


def _fill_batches(
    token: str, rows: list[OutboxEvent], now: datetime, run_started: datetime | None
) -> list[OutboxEvent]:
    """Claim more due rows of the batched kinds the claim holds, up to ``FILL`` each."""
    held = Counter(row.kind for row in rows)
    wanted = {kind: FILL[kind] - n for kind, n in held.items() if n < FILL.get(kind, 0)}
    if not wanted:
        return []
    window = sum(wanted.values()) * FILL_WINDOW
    picked: list[int] = []
    for pk, kind in _due(now, run_started).values_list("pk", "kind")[:window]:
        if wanted.get(kind, 0) > 0:
            picked.append(pk)
            wanted[kind] -= 1
    if not picked:
        return []
    return _lease(token, outbox.due_rows(now).filter(pk__in=picked), len(picked), now)


def _due(now: datetime, run_started: datetime | None) -> QuerySet[OutboxEvent]:
    candidates = outbox.due_rows(now).order_by("next_attempt_at")
    if run_started is not None:
        candidates = candidates.exclude(attempts__gt=0, next_attempt_at__gt=run_started)
    return candidates


def _lease(
    token: str, candidates: QuerySet[OutboxEvent] | leases.Due, limit: int, now: datetime
) -> list[OutboxEvent]:
    """Lease up to ``limit`` of ``candidates`` to ``token``; the rows this run got, by id.

    One ``UPDATE ... RETURNING`` where the database has it (``leases``); the conditional
    UPDATE (still pending, lease free) is what makes a row belong to one run only. A row
    another run retried in between may be claimed before its backoff ends; that is only an
    early attempt.
    """
    lease_until = now + timedelta(seconds=app_settings.LEASE_SECONDS)
    return leases.lease(token, candidates, limit, now, lease_until, CLAIMED_FIELDS)


_learned: dict[str, int] = {}  # the last run's limit in this process, while latency-bound


def forget() -> None:
    """Forget the last run's limit (tests)."""
    _learned.clear()


@contextlib.contextmanager
def _learn(sender: Sender) -> Iterator[None]:
    try:
        yield
    finally:
        if sender.latency_bound:
            _learned["limit"] = sender.limit
        else:
            _learned.pop("limit", None)


def drain(
    *,
    linger: float = 0.0,
    time_budget: float | None = None,
    progress: Progress | None = None,
    on_full_claim: Callable[[], None] | None = None,
    linger_while: Callable[[], bool] | None = None,
) -> Summary:
    """Deliver due rows until none are left (or ``time_budget`` seconds are spent).

    With ``linger``, the last claim happens no earlier than ``linger`` seconds after the
    start (looking every ``POLL_EVERY`` seconds meanwhile), so rows whose kick was
    coalesced into this run's are not left for the sweeper. ``on_full_claim`` is called
    once, the first time a claim comes back full (more may be due: a task enqueues a
    second drain so another worker shares the backlog). With ``linger_while``, lingering
    also ends as soon as it returns False (checked at each look).
    """
    summary = Summary()
    started, run_started = time.monotonic(), timezone.now()
    with Sender(concurrency(), start=_learned.get("limit")) as sender, _learn(sender):
        while time_budget is None or time.monotonic() - started <= time_budget:
            claimed_at, size = time.monotonic(), claim_size(sender)
            token, rows = claim(size, run_started=run_started)
            if not rows:
                remaining = started + linger - time.monotonic()
                if remaining <= 0 or (linger_while is not None and not linger_while()):
                    return summary
                time.sleep(min(remaining, POLL_EVERY))
                continue
            if on_full_claim is not None and len(rows) >= size:
                on_full_claim()
                on_full_claim = None

            def top_up(token: str) -> list[OutboxEvent]:
                nonlocal on_full_claim
                if time_budget is not None and time.monotonic() - started > time_budget:
                    return []
                size = claim_size(sender)
                rows = claim(size, run_started=run_started, token=token)[1]
                if on_full_claim is not None and len(rows) >= size:
                    on_full_claim()
                    on_full_claim = None
                return rows

            released = summary.counts.get("released", 0)
            deliver(token, rows, summary, claimed_at=claimed_at, sender=sender, more=top_up)
            if progress is not None:
                progress(summary)
            if summary.counts.get("released", 0) > released:
                return summary  # too slow for the lease: the next run continues
    summary.add("budget_exhausted")
    return summary


#: While lingering, a run looks for due rows this often (seconds).
POLL_EVERY = 1.0
#: While latency-bound, a claim holds this many times the requests in flight, so the tail
#: of a batch (in flight falling to none, then the next claim) is a small part of it (at
#: eight, a sixth of a 50 ms batch's time once the requests cost no threads).
CLAIM_DEPTH = 16


def claim_size(sender: Sender) -> int:
    """Rows per claim: ``DELIVERY_BATCH_SIZE``, more while the round trip needs more
    requests in flight than that fills."""
    size = app_settings.DELIVERY_BATCH_SIZE
    return max(size, CLAIM_DEPTH * sender.limit) if sender.latency_bound else size


def leased_rows_waiting(now: datetime | None = None) -> bool:
    """Whether pending rows are leased right now (to this or another run, maybe a killed
    one's: they come back when the lease ends)."""
    now = now or timezone.now()
    return OutboxEvent.objects.filter(status=OutboxStatus.PENDING, lease_until__gt=now).exists()


def deliver(
    token: str,
    rows: list[OutboxEvent],
    summary: Summary,
    *,
    claimed_at: float | None = None,
    sender: Sender | None = None,
    more: Callable[[str], list[OutboxEvent]] | None = None,
) -> None:
    """Route, check and send one claimed batch, then record every outcome.

    No request starts later than one HTTP timeout before the lease ends (counted from
    ``claimed_at``, a ``time.monotonic()`` value, and from each renewal: the run renews
    its rows' lease every quarter of ``LEASE_SECONDS`` while it works on them), so a run
    that cannot renew releases rows instead of racing the run that takes them over.
    Outcomes are written as the answers come (``Recorder.flush_rows``), not once per
    batch: a worker killed mid-batch re-sends only the requests it had in flight. While
    latency-bound, once every job has started, ``more(token)`` claims more rows to the
    same token and they join the batch: the next claim's requests go out while this
    one's last round trip is in flight, not after it.
    """
    claimed_at = claimed_at or time.monotonic()
    recorder = Recorder(token, summary)
    breakers = SiteBreakers((), recorder.now)
    run = transmit.Run(claimed_at + app_settings.LEASE_SECONDS - sum(app_settings.HTTP_TIMEOUT),
                       breakers)  # fmt: skip
    batch = Batch(token, recorder, breakers, sending.Lease(token, claimed_at, run))
    jobs = batch.add(rows)
    refill = (lambda: batch.grow(more)) if more is not None else None
    if sender is None:
        with Sender(concurrency()) as own:
            sending.send(jobs, run, own, batch.rows, batch.lease, recorder, refill)
    else:
        sending.send(jobs, run, sender, batch.rows, batch.lease, recorder, refill)
    recorder.flush()
    breakers.save()


class Batch:
    """The rows one delivery run holds under its token, and the jobs that send them."""

    def __init__(
        self, token: str, recorder: Recorder, breakers: SiteBreakers, lease: sending.Lease
    ) -> None:
        self.token, self.recorder, self.breakers, self.lease = token, recorder, breakers, lease
        self.rows: dict[int, OutboxEvent] = {}  # the rows sent, by id, until answered

    def grow(self, more: Callable[[str], list[OutboxEvent]]) -> list[tuple[str, transmit.Job]]:
        """The jobs of the rows ``more(token)`` claims to join the batch. What the batch
        learned so far is written first (a rejected key, a rate-limit pause, a breaker's
        count), so the claim and the rows see it; then the batch's clock is read again: a
        batch that grows can send for minutes, and a pause, a backoff or a breaker's
        cooldown counted from its start would be over before it begins."""
        self.recorder.flush()
        self.lease.unwritten.clear()
        self.breakers.save()
        self.recorder.now = self.breakers.now = timezone.now()
        return self.add(more(self.token))

    def add(self, rows: list[OutboxEvent]) -> list[tuple[str, transmit.Job]]:
        """Route ``rows``, record those not to send now, and return the others' jobs."""
        if not rows:
            return []
        recorder = self.recorder
        rows = routing.prepare(self.token, rows, recorder)
        connections = Connection.objects.in_bulk({row.connection_id for row in rows})
        recorder.connections.update(connections)
        sendable = _sendable(rows, connections, recorder)
        targets = {}
        for conn_id, conn_rows in sendable.items():
            target = _target(connections[conn_id], conn_rows, recorder)
            if target is not None:
                targets[conn_id] = target
        breakers = self.breakers
        breakers.watch({target.site.domain for target in targets.values()})
        jobs: list[tuple[str, transmit.Job]] = []
        for conn_id, target in targets.items():
            domain = target.site.domain
            to_send, to_hold = breakers.admit(domain, conn_id, sendable[conn_id])
            if to_hold:
                recorder.postpone(list(to_hold), breakers.held[domain], "breaker_open")
            jobs.extend((domain, job) for job in _jobs(target, list(to_send)))
            self.rows.update((row.pk, row) for row in to_send)
            self.lease.outstanding.update(row.pk for row in to_send)
        return jobs


def concurrency() -> int:
    """Most requests a run keeps in flight: ``DELIVERY_CONCURRENCY``, at most the pool and
    the half of the process's socket budget that is for requests in flight."""
    return max(1, min(app_settings.DELIVERY_CONCURRENCY, POOL_SIZE, socket_budget() // 2))


def _sendable(
    rows: list[OutboxEvent], connections: dict[int, Connection], recorder: Recorder
) -> dict[int, list[OutboxEvent]]:
    """The rows to send now, by connection; the others are recorded by what their age and
    their connection's status say."""
    by_connection: dict[int, list[OutboxEvent]] = defaultdict(list)
    now = recorder.now
    for row in rows:
        conn = connections.get(row.connection_id or 0)
        if conn is None:
            continue
        if (now - row.event_time).total_seconds() > max_age(row.kind):
            recorder.finish([row], OutboxStatus.EXPIRED, "expired", "Older than Datadog accepts.")
        elif conn.has_ended:
            recorder.finish([row], OutboxStatus.CANCELLED, "cancelled", "Connection revoked.")
        elif not conn.deliverable:
            recorder.park([row], conn, f"connection_{conn.status}")
        elif conn.paused_until is not None and conn.paused_until > now:
            recorder.postpone([row], conn.paused_until)
        else:
            by_connection[conn.pk].append(row)
    return by_connection


def _jobs(target: transmit.Target, rows: list[OutboxEvent]) -> list[transmit.Job]:
    """One job per event, and one per packed body of each batched kind."""
    jobs: list[transmit.Job] = []
    batched: dict[str, list[transmit.Part]] = defaultdict(list)
    for row in rows:
        item = transmit.Item(row.pk, row.kind, row.payload)
        if row.kind == OutboxKind.EVENT:
            jobs.append(transmit.EventJob(target, item))
        else:
            batched[row.kind].append((row.pk, item.body()))
    for kind, parts in batched.items():
        limits = transmit.BATCHED[kind].limits
        for packed in packing.pack([part for _, part in parts], limits):
            group = [parts[i] for i in packed.indexes]
            jobs.append(transmit.BatchJob(target, kind, group, packed.body))
    return jobs


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
        api_key = reveal(conn, conn.api_key) if conn.api_key is not None else None
    except CredentialsUnreadableError:
        recorder.park(rows, conn, "credentials_unreadable")
        return None
    if not api_key:
        mark_broken(conn, ConnectionStatus.KEY_MISSING, "No API key stored.", "key_missing")
        recorder.park(rows, conn, "key_missing")
        return None
    return transmit.Target(conn.pk, site, api_key, conn.api_key_fingerprint)
