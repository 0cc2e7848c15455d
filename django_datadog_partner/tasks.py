"""django-q2 entry points. Thin: they take ids only (never secrets) and call the operations."""

from __future__ import annotations

# --- Connection lifecycle (scheduled by ``datadog_partner_schedule``) -------------------


def check_connections_health() -> dict[str, object]:
    """Hourly: the due slice of the daily per-connection health checks."""
    from .connections.health import run_scheduled_health_checks

    return run_scheduled_health_checks().as_dict()


def retry_revocations() -> dict[str, int]:
    """Every few minutes: finish disconnects that Datadog did not confirm yet."""
    from .connections.revoke import retry_pending_revocations

    return retry_pending_revocations()


def purge_authorization_requests() -> int:
    """Hourly: delete expired and used OAuth authorization requests."""
    from .connections import purge_expired_authorization_requests

    return purge_expired_authorization_requests()
