"""Sending one claimed batch: its requests through the sender, its outcomes written as
the answers come, its lease kept while they are in flight.

Outcomes are written every ``FLUSH_EVERY`` answers or ``FLUSH_AFTER`` seconds, and while
the run is latency-bound also after each look at the sockets, which reads at most
``ANSWERS_AT_ONCE`` answers (the others wait in their sockets): a worker killed mid-batch
re-sends the requests it had in flight and at most that many answers it had read and not
written. (A write every sixteenth of a round trip, after a look that read every ready
socket, left some 15-60 answers read and not written at a SIGKILL in the bench.) The lease
is renewed every quarter of ``LEASE_SECONDS``, so a killed worker's rows come back within
``LEASE_SECONDS`` of its last renewal, however long its batch would have taken.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from .. import outbox
from ..conf import app_settings
from ..models import OutboxEvent
from . import transmit
from .inflight import ANSWERS_AT_ONCE
from .outcomes import Recorder
from .pacing import Sender


def renew(token: str, ids: set[int]) -> int:
    """Extend the lease of the rows among ``ids`` still held by ``token`` to
    ``LEASE_SECONDS`` from now; how many were."""
    until = timezone.now() + timedelta(seconds=app_settings.LEASE_SECONDS)
    return outbox.held(token, sorted(ids)).update(lease_until=until)


class Lease:
    """The lease of the rows of one batch being sent, renewed every quarter of
    ``LEASE_SECONDS``: rows not answered yet, and rows answered but not written yet."""

    def __init__(self, token: str, claimed_at: float, run: transmit.Run) -> None:
        self.token, self.run = token, run
        self.renewed_at = claimed_at
        self.outstanding: set[int] = set()
        self.unwritten: set[int] = set()

    def answered(self, ids: list[int]) -> None:
        self.outstanding.difference_update(ids)
        self.unwritten.update(ids)

    def keep(self) -> None:
        """Renew when due. Requests keep starting only if every row was still held: one
        taken over (or cancelled) meanwhile means the run no longer owns the batch."""
        now = time.monotonic()
        if now - self.renewed_at < app_settings.LEASE_SECONDS / 4:
            return
        ids = self.outstanding | self.unwritten
        self.renewed_at = now
        if ids and renew(self.token, ids) == len(ids):
            self.run.send_by = now + app_settings.LEASE_SECONDS - sum(app_settings.HTTP_TIMEOUT)


#: While CPU-bound, outcomes are written at least every this many answers or seconds.
FLUSH_EVERY, FLUSH_AFTER = ANSWERS_AT_ONCE, 0.01


def send(
    jobs: list[tuple[str, transmit.Job]],
    run: transmit.Run,
    sender: Sender,
    rows: dict[int, OutboxEvent],
    lease: Lease,
    recorder: Recorder,
    more: Callable[[], list[tuple[str, transmit.Job]]] | None = None,
) -> None:
    """Send ``jobs`` (and ``more()``'s, see ``Sender.run``) and record each answer on its
    rows (``rows``, by id: an answered row leaves it)."""
    answers, since = 0, time.monotonic()
    for results in sender.run(jobs, run, more):
        for result in results:
            answered = [rows.pop(i) for i in result.row_ids]
            recorder.record(result, answered, recorder.connections)
            lease.answered(result.row_ids)
        answers += 1
        due = answers >= FLUSH_EVERY or time.monotonic() - since >= FLUSH_AFTER
        if due or (sender.latency_bound and not sender.finished_waiting):
            recorder.flush_rows()
            lease.unwritten.clear()
            answers, since = 0, time.monotonic()
        lease.keep()
