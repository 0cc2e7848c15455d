"""A connection's status transitions, recorded and signalled in one place.

Connection operations and the delivery run both move connections between statuses (a
delivery finds a rejected key; a health check finds an uninstall), so the transitions live
below both of them, beside the model whose rules they follow."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from . import outbox
from .exceptions import CredentialsUnreadableError
from .fields import Secret
from .models import Connection, ConnectionStatus, OutboxEvent, OutboxStatus
from .signals import connection_status_changed

logger = logging.getLogger("django_datadog_partner")

#: The reason recorded when Datadog refuses a connection's API key, by a health check or a
#: delivery alike. Reasons are shown to the customer: no HTTP details (the error code and
#: the outbox rows keep those for the vendor).
API_KEY_REJECTED_REASON = (
    "Datadog rejected the API key; it was probably revoked in Datadog. A key revoked less "
    "than 7 days ago can be restored there (Organization Settings → API Keys): this "
    "connection then resumes at its next check. Otherwise make sure the “OAuth Client API "
    "Key” is revoked and authorise again with “Reconnect” to obtain a new one."
)


def set_status(connection: Connection, new: str, reason: str = "") -> bool:
    """Move ``connection`` to ``new``, recording reason and time; True if it changed.

    The row is updated in the database at once (and the instance in memory), and
    ``connection_status_changed`` is sent after the surrounding transaction commits. A
    return to ``active`` clears the last error: the problem it recorded is over.
    """
    old = connection.status
    now = timezone.now()
    reason = reason[:1000]
    if old == new and connection.status_reason == reason:
        return False
    changes: dict[str, object] = {
        "status": new, "status_reason": reason, "status_changed_at": now, "updated_at": now
    }  # fmt: skip
    recovered = new == ConnectionStatus.ACTIVE and old != new
    if recovered:
        changes.update(last_error_code="", last_error_at=None)
    Connection.objects.filter(pk=connection.pk).update(**changes)
    for name, value in changes.items():
        setattr(connection, name, value)
    if recovered:
        _resume_parked(connection)
    if old != new:
        logger.info("Datadog connection %s: %s -> %s (%s)", connection.pk, old, new, reason or "-")
        transaction.on_commit(
            lambda: connection_status_changed.send(
                sender=Connection, connection=connection, old=old, new=new, reason=reason
            ),
            robust=True,
        )
    return old != new


def _resume_parked(connection: Connection) -> None:
    """A repaired connection sends what waited for it (rows past Datadog's age horizon
    expire instead of being sent)."""
    resumed = outbox.requeue(
        OutboxEvent.objects.filter(connection=connection, status=OutboxStatus.PARKED)
    )
    if resumed:
        logger.info("Datadog connection %s: %s parked items resumed", connection.pk, resumed)


def mark_broken(connection: Connection, new: str, reason: str, error_code: str = "") -> bool:
    """A failure status with the error recorded (``needs_reconnect``, ``api_key_rejected``…)."""
    assert new not in (ConnectionStatus.ACTIVE, ConnectionStatus.REVOKED)
    now = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(
        last_error_at=now, last_error_code=error_code[:100]
    )
    connection.last_error_at, connection.last_error_code = now, error_code[:100]
    return set_status(connection, new, reason)


def reveal(connection: Connection, secret: Secret) -> str:
    """Decrypt one of the connection's secrets. The one policy for a secret that cannot be
    decrypted: the connection becomes ``credentials_unreadable`` (nothing is sent with it
    and nothing asks Datadog for a replacement) and ``CredentialsUnreadableError`` is raised.
    Only a revocation in progress keeps its status, so that its retry completes once
    ``ENCRYPTION_KEYS`` is fixed."""
    try:
        return secret.reveal()
    except CredentialsUnreadableError:
        mark_broken(
            connection,
            ConnectionStatus.CREDENTIALS_UNREADABLE,
            "A stored secret cannot be decrypted with the configured ENCRYPTION_KEYS.",
            "credentials_unreadable",
        )
        raise
