"""The coalesced kick: one delivery task after many commits, never one per event (and the
one other task delivery enqueues: a health check after an intake 403).

Measured traps: an ``async_task`` per save costs 2.7x a save, and
inside ``on_commit`` django-q2's ORM broker closes the database connection (20x with
``CONN_MAX_AGE=0``). So a transaction registers at most one ``on_commit`` callback, and
that callback enqueues only if this process has not enqueued within ``KICK_INTERVAL``; the
enqueue runs inside ``atomic()`` so the ORM broker keeps the connection open.

Why nothing is stranded by the suppressed kicks: a suppressed commit happened before
``enqueued_at + KICK_INTERVAL``, and the task enqueued at ``enqueued_at`` makes its last
claim no earlier than ``KICK_INTERVAL`` after it starts (``drain(linger=...)``).
Anything else (a lost task, a broker outage, a killed worker) waits for the sweeper.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from ..conf import app_settings

logger = logging.getLogger("django_datadog_partner.delivery")

DELIVER_TASK = "django_datadog_partner.tasks.deliver_due"
START_TASK = "django_datadog_partner.tasks.deliver_after_start"
HEALTH_TASK = "django_datadog_partner.tasks.check_connection_health"

_lock = threading.Lock()
_quiet_until = 0.0


def request_kick(using: str = DEFAULT_DB_ALIAS) -> None:
    """Kick delivery after the current transaction on ``using`` commits (once per transaction)."""
    request_kick_on(connections[using])


def request_kick_on(db: BaseDatabaseWrapper) -> None:
    """``request_kick`` on a database wrapper the caller already holds: the save path looks
    it up once, not again here and in ``transaction.on_commit``."""
    if not app_settings.KICK_ON_COMMIT:
        return
    if db.in_atomic_block and any(entry[1] is _kick for entry in db.run_on_commit):
        return
    db.on_commit(_kick, robust=True)


def _kick() -> None:
    global _quiet_until
    now = time.monotonic()
    with _lock:
        if now < _quiet_until:
            return
        _quiet_until = now + app_settings.KICK_INTERVAL
    try:
        enqueue_delivery()
    except Exception:
        logger.warning(
            "Could not enqueue a Datadog delivery task; the sweeper will.", exc_info=True
        )
        with _lock:
            _quiet_until = 0.0


def enqueue_delivery(count: int = 1) -> None:
    """Enqueue ``count`` delivery tasks (ids only: they take no arguments at all)."""
    _enqueue([(DELIVER_TASK, ())] * count, "datadog_partner_deliver")


def share_backlog() -> None:
    """One more delivery task, so another worker shares a large backlog (a broker error is
    logged: the running task goes on alone)."""
    try:
        enqueue_delivery()
    except Exception:
        logger.warning("Could not enqueue a second Datadog delivery task.", exc_info=True)


def on_worker_start(**kwargs: object) -> None:
    """``post_spawn`` receiver: a qcluster worker has started; deliver what waits (rows of
    a killed worker, kicks lost with the broker) now rather than at the next sweep."""
    if not app_settings.KICK_ON_COMMIT:
        return
    try:
        _enqueue([(START_TASK, ())], "datadog_partner_deliver")
    except Exception:
        logger.warning("Could not enqueue the start-up Datadog delivery.", exc_info=True)


def enqueue_health_checks(connection_ids: Iterable[int]) -> None:
    """A health check of each connection (after an intake 403), each task given the id
    only. A broker error is logged: the hourly and daily checks still come."""
    try:
        _enqueue([(HEALTH_TASK, (pk,)) for pk in connection_ids], "datadog_partner_check")
    except Exception:
        logger.warning("Could not enqueue a Datadog health check.", exc_info=True)


def _enqueue(tasks: list[tuple[str, tuple[int, ...]]], name: str) -> None:
    from django_q.conf import Conf
    from django_q.tasks import async_task

    # In autocommit mode the ORM broker calls close_old_connections(); inside atomic() it
    # does not, so the web request keeps its database connection.
    guard = transaction.atomic(using=Conf.ORM) if Conf.ORM else contextlib.nullcontext()
    with guard:
        for func, args in tasks:
            async_task(func, *args, task_name=name, save=False)


def reset() -> None:
    """Forget the last kick (tests)."""
    global _quiet_until
    with _lock:
        _quiet_until = 0.0
