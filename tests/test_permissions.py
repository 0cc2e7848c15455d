"""Who may manage a connection: one rule for the pages and the admin.

Staff status alone grants nothing; the ``manage_connection`` permission or being a member
of the connection's owner does. Reconnecting also needs membership, since the person's
Datadog login decides which organisation the connection is bound to.
"""

from __future__ import annotations

from typing import Any

import pytest
import responses
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from django_datadog_partner import permissions
from django_datadog_partner.models import AuthorizationRequest, Connection, ConnectionStatus
from django_datadog_partner.testing import make_connection
from tests.connect_support import (
    API_KEY,
    api,
    key_json,
    make_user,
    signed_in,
    signed_in_with,
    with_permissions,
)
from tests.lifecycle_support import REVOKE_URL, all_rows
from tests.testapp.models import Organization

pytestmark = pytest.mark.django_db

MARKETPLACE_URL = api("datadoghq.com", "/api/v2/api_keys/marketplace")
PAGES = [
    ("get", "/datadog/connections/{pk}/"),
    ("post", "/datadog/connections/{pk}/disconnect/"),
    ("post", "/datadog/connections/{pk}/reconnect/"),
    ("post", "/datadog/connections/{pk}/api-key/"),
]


@pytest.fixture
def victim() -> Connection:
    """Another tenant's connection, with its key missing so every page action applies."""
    return make_connection(status=ConnectionStatus.KEY_MISSING, api_key=None)


@pytest.mark.parametrize(("method", "path"), PAGES)
@pytest.mark.parametrize(
    "codenames",
    [(), ("view_connection", "change_connection", "delete_connection")],
    ids=["no permission", "the model's own permissions"],
)
def test_staff_status_alone_manages_no_other_tenants_connection(
    django_user_model: Any,
    victim: Connection,
    mocked_http: responses.RequestsMock,
    method: str,
    path: str,
    codenames: tuple[str, ...],
) -> None:
    staff = with_permissions(make_user(django_user_model, "support", is_staff=True), *codenames)
    before = all_rows()
    response = getattr(signed_in(staff), method)(path.format(pk=victim.pk))
    assert response.status_code == 404
    assert all_rows() == before
    assert not AuthorizationRequest.objects.exists()
    assert len(mocked_http.calls) == 0


@pytest.fixture
def manager(django_user_model: Any) -> Client:
    """Vendor staff holding ``manage_connection``, a member of no owner."""
    return signed_in_with(django_user_model, "manager", "manage_connection")


def test_the_manage_permission_grants_every_connections_page(
    manager: Client, victim: Connection, mocked_http: responses.RequestsMock
) -> None:
    assert manager.get(f"/datadog/connections/{victim.pk}/").status_code == 200
    mocked_http.post(MARKETPLACE_URL, json=key_json(), status=201)
    manager.post(f"/datadog/connections/{victim.pk}/api-key/")
    victim.refresh_from_db()
    assert victim.status == ConnectionStatus.ACTIVE
    assert victim.api_key is not None and victim.api_key.reveal() == API_KEY
    mocked_http.post(REVOKE_URL, status=200)
    manager.post(f"/datadog/connections/{victim.pk}/disconnect/")
    victim.refresh_from_db()
    assert victim.status == ConnectionStatus.REVOKED


def test_only_a_member_of_the_owner_may_reconnect(
    manager: Client, victim: Connection, mocked_http: responses.RequestsMock
) -> None:
    """Someone else's Datadog login would bind the tenant's connection to their own org."""
    page = manager.get(f"/datadog/connections/{victim.pk}/").content.decode()
    assert "/reconnect/" not in page
    response = manager.post(f"/datadog/connections/{victim.pk}/reconnect/", follow=True)
    assert response.status_code == 200
    assert "Only a member of" in response.content.decode()
    assert not AuthorizationRequest.objects.exists()
    assert len(mocked_http.calls) == 0


def test_the_owner_may_reconnect_and_disconnect_its_connection(
    django_user_model: Any, mocked_http: responses.RequestsMock
) -> None:
    alice = make_user(django_user_model, "alice")
    connection = make_connection(alice)
    client = signed_in(alice)
    page = client.get(f"/datadog/connections/{connection.pk}/").content.decode()
    assert f"/datadog/connections/{connection.pk}/reconnect/" in page
    response = client.post(f"/datadog/connections/{connection.pk}/reconnect/")
    assert response.status_code == 302
    assert AuthorizationRequest.objects.get().reconnect_of == connection
    mocked_http.post(REVOKE_URL, status=200)
    client.post(f"/datadog/connections/{connection.pk}/disconnect/")
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.REVOKED


# --- the rule itself ------------------------------------------------------------------------


def orgs_of(user: Any) -> list[Organization]:
    return list(Organization.objects.filter(members=user))


def test_the_default_rule(django_user_model: Any, partner_settings) -> None:
    acme = Organization.objects.create(name="Acme")
    connection = make_connection(acme)
    member = make_user(django_user_model, "member")
    acme.members.add(member)
    outsider = make_user(django_user_model, "outsider", is_staff=True)
    manager = with_permissions(make_user(django_user_model, "manager"), "manage_connection")
    root = django_user_model.objects.create_superuser("root", password="pw")
    gone = make_user(django_user_model, "gone", is_active=False)
    acme.members.add(gone)
    with partner_settings(OWNERS_FOR_USER=orgs_of):
        decide = {
            name: (
                permissions.may(user, permissions.MANAGE, connection),
                permissions.may(user, permissions.RECONNECT, connection),
            )
            for name, user in [("member", member), ("outsider", outsider),
                               ("manager", manager), ("root", root), ("gone", gone),
                               ("anonymous", AnonymousUser())]
        }  # fmt: skip
    assert decide == {
        "member": (True, True),
        "outsider": (False, False),
        "manager": (True, False),
        "root": (True, False),
        "gone": (False, False),
        "anonymous": (False, False),
    }


def test_the_host_hook_replaces_the_default_everywhere(
    django_user_model: Any,
    admin_client: Client,
    mocked_http: responses.RequestsMock,
    partner_settings,
) -> None:
    alice = make_user(django_user_model, "alice")
    connection = make_connection(alice)
    with partner_settings(CAN_MANAGE_CONNECTION=lambda user, connection: False):
        assert signed_in(alice).get(f"/datadog/connections/{connection.pk}/").status_code == 404
        ids = {"ids": str(connection.pk)}
        url = f"/admin/datadog_partner/connection/confirm/revoke/?ids={connection.pk}"
        page = admin_client.post(url, ids, follow=True).content.decode()
    assert "you may not manage it" in page
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ACTIVE
    assert len(mocked_http.calls) == 0
