"""django-q2 entry points. Thin: they take ids only (never secrets) and call the operations."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError

logger = logging.getLogger("django_datadog_partner.delivery")

# --- Connection lifecycle (scheduled by ``datadog_partner_schedule``) -------------------


def check_connections_health() -> dict[str, object]:
    """Hourly: the due slice of the daily per-connection health checks."""
    from .connections.health import run_scheduled_health_checks

    return run_scheduled_health_checks().as_dict()


def check_sending_connections() -> dict[str, object]:
    """Every minute: connections in use whose last check is an hour old (an uninstall is
    noticed within the hour). Stops within half of django-q2's ``timeout``."""
    from django_q.conf import Conf

    from .connections.uninstalls import run_in_use_health_checks

    return run_in_use_health_checks(time_budget=(Conf.TIMEOUT or 600) / 2).as_dict()


def check_connection_health(connection_id: int) -> str:
    """Enqueued after an intake 403 (the id only): check that connection now."""
    from .connections.uninstalls import check_connection

    return check_connection(connection_id)


def retry_revocations() -> dict[str, int]:
    """Every few minutes: finish disconnects that Datadog did not confirm yet."""
    from .connections.revoke import retry_pending_revocations

    return retry_pending_revocations()


def purge_authorization_requests() -> int:
    """Hourly: delete expired and used OAuth authorization requests."""
    from .connections import purge_expired_authorization_requests

    return purge_expired_authorization_requests()


# --- Telemetry delivery (kicked after commits; swept every minute) ----------------------


def deliver_due() -> str:
    """Drain due outbox rows. Lingers ``KICK_INTERVAL`` so coalesced kicks are covered, and
    stops within half of django-q2's ``timeout``, handing the rest to a fresh task. The
    first full claim enqueues one more task, so a second worker shares a large backlog
    (that one does the same while the backlog lasts: at most one task per full claim)."""
    from .conf import app_settings

    return _drain(app_settings.KICK_INTERVAL)


def deliver_after_start() -> str:
    """Enqueued when a qcluster worker starts (``post_spawn``): drain what waits, and if
    rows are leased (a killed worker's, perhaps) linger until their lease has ended, so
    they are sent within ``LEASE_SECONDS`` instead of at the sweeper's next pass; the
    linger ends early once no row is leased any more (a live worker held them and finished:
    lingering on would only hold up the cluster's shutdown)."""
    from .conf import app_settings
    from .delivery import leased_rows_waiting

    if leased_rows_waiting():
        return _drain(app_settings.LEASE_SECONDS + 1.0, linger_while=leased_rows_waiting)
    return _drain(app_settings.KICK_INTERVAL)


def _drain(linger: float, linger_while: Callable[[], bool] | None = None) -> str:
    from django_q.conf import Conf

    from .delivery import drain, kick

    budget = (Conf.TIMEOUT or 600) / 2
    summary = drain(linger=linger, time_budget=budget, on_full_claim=kick.share_backlog,
                    linger_while=linger_while)  # fmt: skip
    if summary.counts.get("budget_exhausted"):
        kick.enqueue_delivery()
    return str(summary)


def sweep_outbox() -> int:
    """Every minute: queue the connections' heartbeats that are due, enqueue delivery for
    due rows a lost kick, a broker outage or a killed worker left behind (one task per
    batch of due rows, at most one per worker), then report the backlog
    (``outbox_measured``). Returns the due rows, counted up to ``outbox.COUNT_CAP``."""
    from django_q.conf import Conf

    from . import outbox
    from .conf import app_settings
    from .delivery import kick
    from .heartbeat import send_heartbeats
    from .report import report_outbox_health

    try:
        send_heartbeats()
    except DatabaseError:  # the sweep's own work must go on
        logger.exception("Could not queue the Datadog heartbeats; the next sweep will.")
    due = outbox.count_due(at_most=outbox.COUNT_CAP)
    if due:
        batches = -(-due // app_settings.DELIVERY_BATCH_SIZE)
        kick.enqueue_delivery(min(batches, Conf.WORKERS or 1))
    report_outbox_health()
    return due
