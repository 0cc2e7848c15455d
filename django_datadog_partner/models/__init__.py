"""The app's tables: connections and the authorisations of the connect flow in progress
(``connections``), the owner reference they share (``owners``), the outbox (``outbox``) and
vendor-wide state (``vendor``: configuration alarms, site breakers). Import them from here.
"""

from .connections import (
    ENDED_STATUSES,
    AuthorizationRequest,
    Connection,
    ConnectionQuerySet,
    ConnectionStatus,
    StatusDashboard,
)
from .outbox import OutboxEvent, OutboxKind, OutboxStatus
from .owners import OwnedModel, OwnerReference, owner_reference
from .vendor import Alarm, SiteBreaker

__all__ = [
    "ENDED_STATUSES",
    "Alarm",
    "AuthorizationRequest",
    "Connection",
    "ConnectionQuerySet",
    "ConnectionStatus",
    "OutboxEvent",
    "OutboxKind",
    "OutboxStatus",
    "OwnedModel",
    "OwnerReference",
    "SiteBreaker",
    "StatusDashboard",
    "owner_reference",
]
