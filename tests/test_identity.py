"""``connections.identity``: the organisation Datadog names, and every way it may not."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from django.db import IntegrityError

from django_datadog_partner import connections
from django_datadog_partner.models import Connection, ConnectionStatus
from django_datadog_partner.testing import make_connection
from tests.connect_support import (
    API_KEY,
    CONNECTED,
    api,
    callback,
    key_json,
    requests_made,
    signed_in,
    start,
    token_json,
)
from tests.lifecycle_support import make_owner

pytestmark = pytest.mark.django_db

USER_ID = "3b5e8a1c-0000-4000-8000-00000000abcd"
ORG_ID = "9f1c2d3e-0000-4000-8000-00000000ef01"
USER_ORGS = api("datadoghq.com", f"/api/v2/users/{USER_ID}/orgs")
MARKETPLACE = api("datadoghq.com", "/api/v2/api_keys/marketplace")


def user_orgs(org_id: str = ORG_ID, name: str = "Acme Corp", **extra: Any) -> dict[str, Any]:
    """``ListUserOrganizations`` as Datadog answers it (a ``UserResponse``)."""
    reference = {"type": "orgs", "id": org_id}
    return {
        "data": {
            "type": "users",
            "id": USER_ID,
            "relationships": {"org": {"data": reference}, "other_orgs": {"data": []}},
        },
        "included": [
            {"type": "orgs", "id": "other-org", "attributes": {"name": "Another org"}},
            {**reference, "attributes": {"name": name, "public_id": "abc123"}},
        ],
        **extra,
    }


def connect(alice: Any, mocked_http: responses.RequestsMock, *, creator: str = USER_ID) -> Any:
    mocked_http.post(api("datadoghq.com", "/oauth2/v1/token"), json=token_json())
    mocked_http.post(MARKETPLACE, json=key_json(creator=creator), status=201)
    client = signed_in(alice)
    response = callback(client, start(client).state, dd_oid="forged", dd_org_name="Forged")
    assert response["Location"] == CONNECTED, response["Location"]
    return Connection.objects.get()


def test_the_org_of_the_keys_creator_is_the_connections(
    alice: Any, mocked_http: responses.RequestsMock
) -> None:
    mocked_http.get(USER_ORGS, json=user_orgs())
    connection = connect(alice, mocked_http)
    assert (connection.dd_org_id, connection.dd_org_name) == (ORG_ID, "Acme Corp")
    assert requests_made(mocked_http)[-1] == (
        "GET",
        "api.datadoghq.com",
        f"/api/v2/users/{USER_ID}/orgs",
    )
    assert mocked_http.calls[-1].request.headers["Authorization"] == "Bearer access-1"


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 500, "body": "down"},
        {"status": 403, "json": {"errors": ["Forbidden"]}},
        {"status": 404, "json": {"errors": ["Not found"]}},
        {"status": 200, "body": "not json"},
        {"status": 200, "json": ["a", "list"]},
        {"status": 200, "json": {"data": {"relationships": {"org": {"data": {}}}}}},
        {"status": 200, "json": user_orgs(org_id="../../api/v1/x y")},
        {"status": 200, "body": "[" * 50000 + "]" * 50000},
        {"status": 302, "headers": {"Location": "https://evil.example/"}},
    ],
)
def test_no_clear_answer_leaves_the_org_unverified_and_the_connection_working(
    alice: Any, mocked_http: responses.RequestsMock, answer: dict[str, Any]
) -> None:
    mocked_http.get(USER_ORGS, **answer)
    connection = connect(alice, mocked_http)
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.api_key is not None and connection.api_key.reveal() == API_KEY
    assert (connection.dd_org_id, connection.dd_org_name) == ("", "")


def test_an_org_missing_from_included_is_verified_without_a_name(
    alice: Any, mocked_http: responses.RequestsMock
) -> None:
    mocked_http.get(USER_ORGS, json={**user_orgs(), "included": []})
    assert (connect(alice, mocked_http).dd_org_id, Connection.objects.get().dd_org_name) == (
        ORG_ID,
        "",
    )


@pytest.mark.parametrize("creator", ["../../oauth2/v1/revoke", "a b", "x" * 101, ""])
def test_a_strange_creator_id_is_never_put_in_a_url(
    alice: Any, mocked_http: responses.RequestsMock, creator: str
) -> None:
    connection = connect(alice, mocked_http, creator=creator)
    assert connection.dd_org_id == ""
    assert [path for _m, _h, path in requests_made(mocked_http)] == [
        "/oauth2/v1/token",
        "/api/v2/api_keys/marketplace",
    ]


def test_create_the_api_key_again_names_the_org_of_the_new_key(
    mocked_http: responses.RequestsMock,
) -> None:
    retry = make_connection(api_key=None, dd_org_id="", status=ConnectionStatus.KEY_MISSING)
    mocked_http.post(MARKETPLACE, json=key_json(creator=USER_ID), status=201)
    mocked_http.get(USER_ORGS, json=user_orgs())
    assert connections.create_api_key(retry).result == "created"
    retry.refresh_from_db()
    assert (retry.dd_org_id, retry.dd_org_name) == (ORG_ID, "Acme Corp")


def test_create_the_api_key_again_leaves_an_org_another_connection_stands_for_unverified(
    mocked_http: responses.RequestsMock,
) -> None:
    owner = make_owner("acme")
    make_connection(owner, dd_org_id=ORG_ID, dd_org_name="Acme Corp")
    retry = make_connection(owner, api_key=None, dd_org_id="", status=ConnectionStatus.KEY_MISSING)
    mocked_http.post(MARKETPLACE, json=key_json(creator=USER_ID), status=201)
    mocked_http.get(USER_ORGS, json=user_orgs())
    assert connections.create_api_key(retry).result == "created"
    retry.refresh_from_db()
    assert retry.status == ConnectionStatus.ACTIVE
    assert retry.dd_org_id == ""  # one connection per confirmed org and owner


def test_one_connection_per_confirmed_org_owner_and_region() -> None:
    owner = make_owner("acme")
    make_connection(owner, dd_org_id="")
    make_connection(owner, dd_org_id="")  # unconfirmed ones do not collide
    make_connection(owner, dd_org_id=ORG_ID)
    make_connection(owner, dd_org_id=ORG_ID, domain="datadoghq.eu")
    with pytest.raises(IntegrityError):
        make_connection(owner, dd_org_id=ORG_ID)
