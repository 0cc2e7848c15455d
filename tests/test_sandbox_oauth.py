"""The fake Datadog's OAuth server: authorize checks, PKCE, code and refresh-token rules."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.utils import timezone

from django_datadog_partner.sandbox import oauth_server
from django_datadog_partner.sandbox.control import Sandbox
from django_datadog_partner.sandbox.engine import handle
from django_datadog_partner.sandbox.memory import MemoryStore
from django_datadog_partner.sandbox.protocol import Answer
from django_datadog_partner.sandbox.state import Store, digest
from django_datadog_partner.sandbox.store import OrmStore

REDIRECT = "https://vendor.example/datadog/callback/"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(autouse=True)
def _registered_redirect() -> Iterator[None]:
    with mock.patch.object(oauth_server, "registered_redirect_uris", return_value=[REDIRECT]):
        yield


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(challenge: str, **overrides: str) -> str:
    params = {
        "response_type": "code",
        "client_id": "test-client-id",
        "redirect_uri": REDIRECT,
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **overrides,
    }
    return "http://sandbox/oauth2/v1/authorize?" + urlencode(params)


class Flow:
    def __init__(self, store: Store | None = None) -> None:
        self.sandbox = Sandbox(store or MemoryStore(), domain="sandbox.localhost")
        self.org = self.sandbox.create_org("Acme")
        self.user = self.sandbox.create_user(self.org, "Ada")

    def post(
        self, path: str, form: dict[str, str], headers: dict[str, str] | None = None
    ) -> Answer:
        return handle(
            "POST",
            path,
            headers or FORM,
            urlencode(form).encode(),
            {},
            store=self.sandbox.store,
            domain="sandbox.localhost",
        )

    def get(self, path: str, headers: dict[str, str]) -> Answer:
        return handle("GET", path, headers, b"", {}, store=self.sandbox.store)

    def token(self, **form: str) -> Answer:
        base = {"client_id": "test-client-id", "client_secret": "test-client-secret"}
        return self.post("/oauth2/v1/token", {**base, **form})

    def consent(self, **overrides: str) -> tuple[dict[str, list[str]], str]:
        verifier, challenge = pkce()
        callback = self.sandbox.authorize(authorize_url(challenge, **overrides), self.user)
        assert callback.startswith(REDIRECT + "?")
        return parse_qs(urlsplit(callback).query), verifier

    def exchange(self) -> dict[str, Any]:
        params, verifier = self.consent()
        answer = self.token(
            grant_type="authorization_code",
            code=params["code"][0],
            redirect_uri=REDIRECT,
            code_verifier=verifier,
        )
        assert answer.status == 200, answer.json()
        return answer.json()


@pytest.fixture
def flow() -> Flow:
    return Flow()


def test_unknown_client_or_redirect_uri_never_redirects(flow: Flow) -> None:
    _verifier, challenge = pkce()
    for overrides, message in [
        ({"client_id": "someone-else"}, "invalid_request - Invalid client_id parameter value"),
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request - Mismatching redirect URI"),
    ]:
        with pytest.raises(oauth_server.AuthorizeError) as error:
            flow.sandbox.authorize(authorize_url(challenge, **overrides), flow.user)
        assert str(error.value) == message
        assert error.value.redirect is False


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"scope": "api_keys_write DROP;"}, "invalid_scope"),
    ],
)
def test_other_problems_redirect_with_an_error(
    flow: Flow, overrides: dict[str, str], error: str
) -> None:
    _verifier, challenge = pkce()
    callback = flow.sandbox.authorize(authorize_url(challenge, **overrides), flow.user)
    params = parse_qs(urlsplit(callback).query)
    assert params["error"] == [error]
    assert params["state"] == ["st4te"]
    assert "code" not in params


def test_success_carries_the_org_params_as_datadog_does_unless_bare(flow: Flow) -> None:
    params, _verifier = flow.consent()
    assert set(params) == {"code", "state", "domain", "dd_oid", "dd_org_name"}
    assert params["domain"] == ["sandbox.localhost"]  # not a known site here: no ``site``
    assert params["dd_oid"] == [flow.org.public_id]
    assert params["dd_org_name"] == ["Acme"]
    flow.sandbox.set_faults(flow.org, bare_callback=True)
    params, _verifier = flow.consent()
    assert set(params) == {"code", "state", "domain"}


def test_user_orgs_names_the_users_org_to_any_token_of_that_org(flow: Flow) -> None:
    bearer = {"Authorization": f"Bearer {flow.exchange()['access_token']}"}
    answer = flow.get(f"/api/v2/users/{flow.user.public_id}/orgs", headers=bearer)
    assert answer.status == 200
    body = answer.json()
    assert body["data"]["id"] == flow.user.public_id
    assert body["data"]["relationships"]["org"]["data"] == {
        "type": "orgs",
        "id": flow.org.public_id,
    }
    (org,) = body["included"]
    assert (org["type"], org["id"], org["attributes"]["name"]) == (
        "orgs",
        flow.org.public_id,
        "Acme",
    )
    stranger = flow.sandbox.create_user(flow.sandbox.create_org("Other"))
    assert flow.get(f"/api/v2/users/{stranger.public_id}/orgs", headers=bearer).status == 404
    assert flow.get("/api/v2/users/not-a-user/orgs", headers=bearer).status == 404
    assert flow.get(f"/api/v2/users/{flow.user.public_id}/orgs", headers={}).status == 401
    assert flow.post(f"/api/v2/users/{flow.user.public_id}/orgs", {}, headers=bearer).status == 405


def test_deny_redirects_access_denied(flow: Flow) -> None:
    _verifier, challenge = pkce()
    callback = flow.sandbox.authorize(authorize_url(challenge), flow.user, approve=False)
    assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]


def test_code_exchange_gives_bearer_tokens(flow: Flow) -> None:
    tokens = flow.exchange()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == "api_keys_write"
    assert tokens["access_token"] != tokens["refresh_token"]


def test_wrong_verifier_fails_with_datadogs_invalid_grant_shape(flow: Flow) -> None:
    params, _verifier = flow.consent()
    answer = flow.token(
        grant_type="authorization_code",
        code=params["code"][0],
        redirect_uri=REDIRECT,
        code_verifier=pkce()[0],
    )
    assert answer.status == 400
    assert answer.json() == {
        "errors": ["invalid_grant - Invalid authorization code or code verifier."]
    }


def test_code_is_single_use_and_a_replay_revokes_its_tokens(flow: Flow) -> None:
    params, verifier = flow.consent()
    form = {
        "grant_type": "authorization_code",
        "code": params["code"][0],
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    tokens = flow.token(**form).json()
    replay = flow.token(**form)
    assert replay.status == 400
    assert replay.json()["errors"][0].startswith("invalid_grant - ")
    refresh = flow.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refresh.status == 400


def test_expired_code_is_refused(flow: Flow) -> None:
    params, verifier = flow.consent()
    later = timezone.now() + oauth_server.CODE_LIFETIME + timedelta(seconds=1)
    with mock.patch("django_datadog_partner.sandbox.protocol.timezone.now", return_value=later):
        answer = flow.token(
            grant_type="authorization_code",
            code=params["code"][0],
            redirect_uri=REDIRECT,
            code_verifier=verifier,
        )
    assert answer.status == 400


def test_code_bound_to_its_redirect_uri(flow: Flow) -> None:
    params, verifier = flow.consent()
    answer = flow.token(
        grant_type="authorization_code",
        code=params["code"][0],
        redirect_uri=REDIRECT + "other",
        code_verifier=verifier,
    )
    assert answer.json() == {"errors": ["invalid_request - Mismatching redirect URI"]}


def test_refresh_rotates_and_a_replayed_refresh_token_fails(flow: Flow) -> None:
    first = flow.exchange()
    second = flow.token(grant_type="refresh_token", refresh_token=first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    replay = flow.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert replay.status == 400
    assert replay.json() == {
        "errors": ["invalid_grant - The refresh token is invalid, expired or revoked."]
    }
    assert (
        flow.token(grant_type="refresh_token", refresh_token=second["refresh_token"]).status == 200
    )


@pytest.mark.django_db
@pytest.mark.parametrize("store", [MemoryStore, OrmStore])
def test_refresh_can_keep_the_refresh_token_instead_of_rotating_it(store: type[Store]) -> None:
    """Datadog does not document rotation: the switch lets tests take either answer."""
    flow = Flow(store())
    first = flow.exchange()
    flow.sandbox.set_faults(flow.org, rotate_refresh_tokens=False)
    second = flow.token(grant_type="refresh_token", refresh_token=first["refresh_token"]).json()
    assert second["refresh_token"] == first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    again = flow.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert again.status == 200
    flow.sandbox.clear_faults(flow.org)  # a behaviour switch, not a fault: it stays
    assert flow.sandbox.faults(flow.org).rotate_refresh_tokens is False
    flow.sandbox.uninstall(flow.org)
    gone = flow.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert gone.status == 400


def test_uninstall_and_invalid_grant_fault_fail_the_next_refresh(flow: Flow) -> None:
    tokens = flow.exchange()
    flow.sandbox.set_faults(flow.org, refresh_invalid_grant=True)
    assert (
        flow.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status == 400
    )
    flow.sandbox.clear_faults(flow.org)
    flow.sandbox.uninstall(flow.org)
    answer = flow.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert answer.json()["errors"][0].startswith("invalid_grant - ")


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"client_secret": ""}, 401, "invalid_client - Client authentication failed"),
        ({"client_secret": "wrong"}, 401, "invalid_client - Client authentication failed"),
        ({"client_id": "other"}, 400, "invalid_request - Invalid client_id parameter value"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type - Unsupported grant_type"),
        ({"grant_type": "authorization_code"}, 400, "invalid_request - Missing parameter: code"),
    ],
)
def test_token_endpoint_errors(flow: Flow, form: dict[str, str], status: int, message: str) -> None:
    answer = flow.token(**{"grant_type": "refresh_token", "refresh_token": "x", **form})
    assert answer.status == status
    assert answer.json()["errors"][0].startswith(message)
    assert answer.headers["Cache-Control"] == "no-store"


def test_token_endpoint_refuses_other_content_types_like_datadog(flow: Flow) -> None:
    answer = flow.post(
        "/oauth2/v1/token", {"grant_type": "x"}, headers={"Content-Type": "text/plain"}
    )
    assert answer.json() == {"errors": ["invalid_request - Invalid code or code verifier"]}


def test_a_deeply_nested_json_token_request_fails_like_a_bad_code(flow: Flow) -> None:
    """Anyone can post to the token endpoint: ``[[[…`` must be Datadog's 400, not a 500."""
    headers = {"Content-Type": "application/json"}
    answer = handle("POST", "/oauth2/v1/token", headers, b"[" * 100_000, {},
                    store=flow.sandbox.store, domain="sandbox.localhost")  # fmt: skip
    assert answer.json() == {"errors": ["invalid_request - Invalid code or code verifier"]}


def test_revoke_is_rfc7009_and_refresh_revocation_ends_the_grant(flow: Flow) -> None:
    tokens = flow.exchange()
    creds = {"client_id": "test-client-id", "client_secret": "test-client-secret"}
    unknown = flow.post("/oauth2/v1/revoke", {**creds, "token": "never-issued"})
    assert (unknown.status, unknown.json()) == (200, {})
    assert flow.post("/oauth2/v1/revoke", creds).status == 400
    assert flow.post("/oauth2/v1/revoke", {**creds, "token": tokens["refresh_token"]}).status == 200
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert flow.post("/api/v2/api_keys/marketplace", {}, headers=bearer).status == 403


def test_marketplace_key_shown_once_then_409(flow: Flow) -> None:
    tokens = flow.exchange()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    created = flow.post("/api/v2/api_keys/marketplace", {}, headers=bearer)
    assert created.status == 201
    data = created.json()["data"]
    assert data["type"] == "api_keys"
    assert len(data["attributes"]["key"]) == 32
    assert data["attributes"]["last4"] == data["attributes"]["key"][-4:]
    assert data["relationships"]["created_by"]["data"]["id"] == flow.user.public_id
    again = flow.post("/api/v2/api_keys/marketplace", {}, headers=bearer)
    assert (again.status, again.json()) == (
        409,
        {"errors": ["An API key with this name already exists"]},
    )
    key_header = {"DD-API-KEY": data["attributes"]["key"]}
    assert (
        handle("GET", "/api/v1/validate", key_header, b"", {}, store=flow.sandbox.store).status
        == 200
    )


def test_marketplace_key_auth_and_faults(flow: Flow) -> None:
    tokens = flow.exchange()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert flow.post("/api/v2/api_keys/marketplace", {}, headers={}).status == 401
    nope = flow.post("/api/v2/api_keys/marketplace", {}, headers={"Authorization": "Bearer x"})
    assert nope.json() == {"errors": ["Forbidden"]}
    flow.sandbox.set_faults(flow.org, key_creation="409")
    assert flow.post("/api/v2/api_keys/marketplace", {}, headers=bearer).status == 409
    flow.sandbox.set_faults(flow.org, key_creation="403")
    assert flow.post("/api/v2/api_keys/marketplace", {}, headers=bearer).status == 403
    flow.sandbox.clear_faults(flow.org)
    assert flow.post("/api/v2/api_keys/marketplace", {}, headers=bearer).status == 201


def test_marketplace_needs_the_api_keys_write_scope(flow: Flow) -> None:
    grant = flow.sandbox.grant(flow.org, flow.user, scopes=["events_read"])
    bearer = {"Authorization": f"Bearer {grant.access_token}"}
    assert flow.post("/api/v2/api_keys/marketplace", {}, headers=bearer).status == 403


@pytest.mark.django_db
@pytest.mark.parametrize("store", [MemoryStore, OrmStore])
def test_a_revoked_key_restores_for_7_days_and_may_block_a_new_one(store: type) -> None:
    sandbox = Sandbox(store(), domain="sandbox.localhost")
    org = sandbox.create_org("Acme")

    def marketplace() -> int:
        bearer = {"Authorization": f"Bearer {sandbox.grant(org).access_token}"}
        path = "/api/v2/api_keys/marketplace"
        return handle("POST", path, bearer, b"", {}, store=sandbox.store).status

    key = sandbox.create_api_key(org)
    assert sandbox.restore_api_key(org) == 0  # nothing revoked
    sandbox.revoke_api_key(org)
    sandbox.set_faults(org, restorable_key_conflict=True)
    assert marketplace() == 409  # the revoked key can still be restored
    assert sandbox.restore_api_key(org) == 1
    assert sandbox.store.find_key(digest(key)).revoked is False  # type: ignore[union-attr]

    sandbox.revoke_api_key(org)
    later = timezone.now() + timedelta(days=7, minutes=1)
    with mock.patch.object(timezone, "now", return_value=later):
        assert sandbox.restore_api_key(org) == 0  # too late
        assert marketplace() == 201  # and no longer in the way
        sandbox.revoke_api_key(org)
        assert sandbox.restore_api_key(org) == 1
        assert sandbox.restore_api_key(org) == 0  # a key is active again


@pytest.mark.django_db
@pytest.mark.parametrize("store", [MemoryStore, OrmStore])
def test_revoke_checks_the_bearer_only_when_switched_on(store: type) -> None:
    sandbox = Sandbox(store(), domain="sandbox.localhost")
    org = sandbox.create_org("Acme")

    def revoke(token: str, bearer: str | None) -> int:
        form = {"client_id": "test-client-id", "client_secret": "test-client-secret",
                "token": token}  # fmt: skip
        headers = {**FORM, **({"Authorization": f"Bearer {bearer}"} if bearer else {})}
        body = urlencode(form).encode()
        return handle("POST", "/oauth2/v1/revoke", headers, body, {}, store=sandbox.store).status

    first, second = sandbox.grant(org), sandbox.grant(org)
    assert revoke(first.refresh_token, None) == 200
    sandbox.set_faults(org, revoke_needs_bearer=True)
    assert revoke(second.refresh_token, None) == 401
    assert revoke(second.refresh_token, second.refresh_token) == 401  # not an access token
    assert revoke(second.refresh_token, second.access_token) == 200
    assert revoke(second.access_token, second.access_token) == 401  # died with its grant
    assert revoke("unknown", None) == 200  # RFC 7009: unknown tokens are no one's
