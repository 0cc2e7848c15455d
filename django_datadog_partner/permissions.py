"""Who may connect which owner, and who may do what to a connection.

One rule for the pages, the admin and every other caller: ``may(user, action, connection)``.

* ``MANAGE`` (see a connection's page, disconnect/revoke, refresh, check its health, send a
  test event, create its API key again): the ``CAN_MANAGE_CONNECTION`` hook decides. Its
  default, ``owner_or_manager``, allows a member of the connection's owner (one of
  ``OWNERS_FOR_USER(user)``) or a holder of the ``datadog_partner.manage_connection``
  permission (superusers hold every permission). Staff status alone grants nothing, and
  neither do the model's change/delete permissions: managing a connection acts on a
  customer's Datadog organisation, so it takes a permission granted for that purpose.
* ``RECONNECT`` (start a new authorisation for the connection): ``MANAGE`` and a member of
  the owner, because the Datadog login of whoever completes the flow decides which Datadog
  organisation the connection is bound to; a vendor employee's login must never be it.

Both hooks are the host app's way to map its own tenancy (organisations, teams,
workspaces) onto connections. Pages answer 404 for a connection the user may not manage,
so ids of other tenants' connections reveal nothing. Management commands apply no per-user
rule: whoever runs them already holds the settings, the database and the encryption keys.
"""

from __future__ import annotations

from typing import Any, Literal

from django.db.models import Model, Q
from django.http import Http404

from .conf import app_settings
from .models import Connection, OwnedModel, owner_reference

Action = Literal["manage", "reconnect"]

MANAGE: Action = "manage"
RECONNECT: Action = "reconnect"

#: The Django permission behind the default rule (``Connection.Meta.permissions``).
MANAGE_PERMISSION = "datadog_partner.manage_connection"


def user_alone(user: Any) -> list[Model]:
    """Default ``OWNERS_FOR_USER``: a user connects only their own account."""
    return [user]


def owner_or_manager(user: Any, connection: Connection) -> bool:
    """Default ``CAN_MANAGE_CONNECTION``: a member of the owner, or a holder of
    ``manage_connection``."""
    return holds_manage_permission(user) or is_owner_member(user, connection)


def holds_manage_permission(user: Any) -> bool:
    """The Django permission that lets vendor staff manage any tenant's connection."""
    return bool(user.has_perm(MANAGE_PERMISSION))


def is_owner_member(user: Any, owned: OwnedModel) -> bool:
    """Whether the owner of ``owned`` (a connection or a pending authorisation) is one of
    ``OWNERS_FOR_USER(user)``."""
    return owned.owner_reference in {owner_reference(owner) for owner in owners_for_user(user)}


def owners_for_user(user: Any) -> list[Model]:
    """The owners ``user`` may connect, through the ``OWNERS_FOR_USER`` hook."""
    if not _signed_in(user):
        return []
    return [owner for owner in app_settings.OWNERS_FOR_USER(user) if owner is not None]


def may(user: Any, action: Action, connection: Connection) -> bool:
    """Whether ``user`` may do ``action`` to ``connection``: the one rule (see above)."""
    if not _signed_in(user) or not app_settings.CAN_MANAGE_CONNECTION(user, connection):
        return False
    return action == MANAGE or is_owner_member(user, connection)


def _signed_in(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_active", True))


def find_owner(user: Any, key: str) -> Model | None:
    """The owner of ``user`` whose ``owner_choice_value`` is ``key``, else None."""
    for owner in owners_for_user(user):
        if owner_choice_value(owner) == key:
            return owner
    return None


def owner_choice_value(owner: Model) -> str:
    content_type_id, object_id = owner_reference(owner)
    return f"{content_type_id}:{object_id}"


def manageable_connection(user: Any, pk: Any) -> Connection:
    """The connection ``pk`` if ``user`` may manage it; 404 otherwise (no existence oracle)."""
    try:
        connection = Connection.objects.get(pk=int(pk))
    except (Connection.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404 from None
    if not may(user, MANAGE, connection):
        raise Http404
    return connection


def connections_for_user(user: Any) -> list[Connection]:
    """Connections of the user's owners that the user may manage, newest first."""
    keys = {owner_reference(owner) for owner in owners_for_user(user)}
    if not keys:
        return []
    query = Q()
    for content_type_id, object_id in keys:
        query |= Q(owner_content_type_id=content_type_id, owner_object_id=object_id)
    return [c for c in Connection.objects.filter(query) if may(user, MANAGE, c)]
