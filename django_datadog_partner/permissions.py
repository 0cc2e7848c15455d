"""Who may connect which owner, and who may see or change a connection.

Both decisions are hooks (``OWNERS_FOR_USER``, ``CAN_MANAGE_CONNECTION``) so a host app can
map its own tenancy (organisations, teams, workspaces) onto connections. Views call the
helpers below and answer 404 for a connection the user may not manage, so ids of other
tenants' connections reveal nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db.models import Model, Q
from django.http import Http404

from .conf import app_settings
from .models import Connection

OwnerKey = tuple[int, str]


def user_alone(user: Any) -> list[Model]:
    """Default ``OWNERS_FOR_USER``: a user connects only their own account."""
    return [user]


def owner_or_staff(user: Any, connection: Connection) -> bool:
    """Default ``CAN_MANAGE_CONNECTION``: staff, or the owner is (one of) the user's owners."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_staff:
        return True
    key = connection_owner_key(connection)
    return key == owner_key(user) or key in {owner_key(o) for o in owners_for_user(user)}


def owners_for_user(user: Any) -> list[Model]:
    """The owners ``user`` may connect, through the ``OWNERS_FOR_USER`` hook."""
    if not getattr(user, "is_authenticated", False):
        return []
    return [owner for owner in app_settings.OWNERS_FOR_USER(user) if owner is not None]


def can_manage_connection(user: Any, connection: Connection) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(app_settings.CAN_MANAGE_CONNECTION(user, connection))


def owner_key(owner: Model) -> OwnerKey:
    """A comparable reference to any model instance, as stored on connections."""
    return ContentType.objects.get_for_model(owner).pk, str(owner.pk)


def connection_owner_key(connection: Connection) -> OwnerKey:
    return connection.owner_content_type_id, connection.owner_object_id


def find_owner(user: Any, key: str) -> Model | None:
    """The owner of ``user`` whose ``owner_choice_value`` is ``key``, else None."""
    for owner in owners_for_user(user):
        if owner_choice_value(owner) == key:
            return owner
    return None


def owner_choice_value(owner: Model) -> str:
    content_type_id, object_id = owner_key(owner)
    return f"{content_type_id}:{object_id}"


def manageable_connection(user: Any, pk: Any) -> Connection:
    """The connection ``pk`` if ``user`` may manage it; 404 otherwise (no existence oracle)."""
    try:
        connection = Connection.objects.get(pk=int(pk))
    except (Connection.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404 from None
    if not can_manage_connection(user, connection):
        raise Http404
    return connection


def connections_for_user(user: Any) -> list[Connection]:
    """Connections of the user's owners that the user may manage, newest first."""
    keys = {owner_key(owner) for owner in owners_for_user(user)}
    if not keys:
        return []
    query = Q()
    for content_type_id, object_id in keys:
        query |= Q(owner_content_type_id=content_type_id, owner_object_id=object_id)
    return [c for c in Connection.objects.filter(query) if can_manage_connection(user, c)]
