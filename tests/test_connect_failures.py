"""Every way the connect flow fails has a page with a plain explanation and a status code."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from django.test import Client

from django_datadog_partner import failures
from django_datadog_partner.models import Alarm, AuthorizationRequest, Connection, ConnectionStatus
from django_datadog_partner.signals import connection_failed
from tests.connect_support import (
    API_KEY,
    CALLBACK,
    CONNECTED,
    ONBOARDING,
    REDIRECT_URI,
    api,
    callback,
    fake_datadog,
    key_json,
    make_user,
    requests_made,
    signed_in,
    start,
    token_json,
)

pytestmark = pytest.mark.django_db

TOKEN = api("datadoghq.com", "/oauth2/v1/token")
MARKETPLACE = api("datadoghq.com", "/api/v2/api_keys/marketplace")
VALIDATE = api("datadoghq.com", "/api/v1/validate")
OTHER_KEY = "ffffeeeeddddccccbbbbaaaa99998888"


@pytest.fixture
def client(alice: Any) -> Client:
    return signed_in(alice)


@pytest.fixture
def failed() -> Any:
    reasons: list[tuple[str, Any]] = []

    def receiver(sender: Any, reason: str, user: Any, **kwargs: Any) -> None:
        reasons.append((reason, user))

    connection_failed.connect(receiver)
    yield reasons
    connection_failed.disconnect(receiver)


def follow_failure(client: Client, response: Any, reason: str, status: int) -> str:
    """The callback redirects (PRG) to the error page; that page has the status."""
    assert response.status_code == 302, response.content[:300]
    location = response["Location"]
    assert urlsplit(location).path == "/datadog/error/"
    assert dict(parse_qsl(urlsplit(location).query)) == {"reason": reason}
    page = client.get(location)
    assert page.status_code == status
    assert "no-store" in page["Cache-Control"]
    assert page["Referrer-Policy"] == "no-referrer"
    text = page.content.decode()
    assert f"Error code: {reason}" in text
    return text


# --- Callback errors from Datadog (no token request) ----------------------------------


def test_user_denied_access(
    client: Client, mocked_http: responses.RequestsMock, failed: list[Any], alice: Any
) -> None:
    started = start(client)
    response = client.get(
        f"{CALLBACK}?error=access_denied&error_description=denied&state={started.state}"
    )
    text = follow_failure(client, response, failures.ACCESS_DENIED, 403)
    assert "Access was not granted" in text
    assert "start again from the integration tile and press Authorize" in text
    assert started.row.used_at is not None  # the state is consumed
    assert len(mocked_http.calls) == 0
    assert failed == [(failures.ACCESS_DENIED, alice)]


def test_error_text_from_datadog_is_escaped_and_logged_safely(
    client: Client, mocked_http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    started = start(client)
    hostile = "<script>alert(1)</script>\r\nFAKE LOG LINE"
    response = client.get(
        CALLBACK,
        {"error": "server_error", "error_description": hostile, "state": started.state},
    )
    text = follow_failure(client, response, failures.AUTHORIZE_ERROR, 400)
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert not any(line.startswith("FAKE LOG LINE") for line in caplog.text.splitlines())
    assert len(mocked_http.calls) == 0


@pytest.mark.parametrize("state", [None, "x" * 43, "own, but spent"])
def test_error_words_are_shown_only_for_this_browsers_live_flow(
    client: Client, alice: Any, state: str | None
) -> None:
    """A link anyone can send (``?error=…&error_description=…``) must not put its author's
    words on our page as Datadog's: only the browser whose flow Datadog ends sees them."""
    planted = "Your account is suspended: call +1 555 0100 now"
    if state == "own, but spent":
        state = start(client).state
        client.get(CALLBACK, {"error": "access_denied", "state": state})
    params = {"error": "server_error", "error_description": planted}
    response = client.get(CALLBACK, {**params, **({"state": state} if state else {})})
    text = follow_failure(client, response, failures.AUTHORIZE_ERROR, 400)
    assert planted not in text and "Datadog said" not in text


def test_error_with_an_unknown_state_shows_the_same_page(client: Client) -> None:
    response = client.get(CALLBACK, {"error": "access_denied", "state": "x" * 43})
    follow_failure(client, response, failures.ACCESS_DENIED, 403)


def test_invalid_scope_at_authorize(client: Client) -> None:
    started = start(client)
    response = client.get(CALLBACK, {"error": "invalid_scope", "state": started.state})
    text = follow_failure(client, response, failures.INVALID_SCOPE, 400)
    assert "Datadog could not grant the requested permissions" in text


# --- Token endpoint refusals ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "reason", "page_status", "message"),
    [
        (
            400,
            {"errors": ["invalid_request - Invalid client_id parameter value"]},
            failures.CLIENT_NOT_PUBLISHED,
            502,
            "not published yet",
        ),
        (
            400,
            {"errors": ["invalid_request - Mismatching redirect URI"]},
            failures.REDIRECT_URI_MISMATCH,
            502,
            "Mismatching redirect URI",
        ),
        (
            400,
            {"errors": ["Invalid code or code verifier"]},
            failures.INVALID_CODE_VERIFIER,
            400,
            "Invalid code or code verifier",
        ),
        (
            400,
            {"errors": ["invalid_grant - Invalid authorization code or code verifier."]},
            failures.INVALID_GRANT,
            400,
            "cannot be used in another",
        ),
        (403, {"errors": ["Forbidden"]}, failures.FORBIDDEN, 502, "Forbidden"),
        (
            400,
            {"errors": ["unsupported_grant_type - nope"]},
            failures.DATADOG_REFUSED,
            502,
            "Datadog refused the connection",
        ),
        (200, {"token_type": "bearer"}, failures.INVALID_TOKEN_RESPONSE, 502, "usable"),
        (
            200,
            {"access_token": "a", "token_type": "mac"},
            failures.INVALID_TOKEN_RESPONSE,
            502,
            "usable",
        ),
        (503, "<html>down</html>", failures.DATADOG_UNAVAILABLE, 503, "Datadog did not answer"),
        (
            429,
            {"errors": ["Too many requests"]},
            failures.DATADOG_UNAVAILABLE,
            503,
            "Wait a minute",
        ),
    ],
)
def test_token_endpoint_failures(
    client: Client,
    mocked_http: responses.RequestsMock,
    failed: list[Any],
    status: int,
    body: Any,
    reason: str,
    page_status: int,
    message: str,
) -> None:
    started = start(client)
    if isinstance(body, str):
        mocked_http.post(TOKEN, status=status, body=body)
    else:
        mocked_http.post(TOKEN, status=status, json=body)
    text = follow_failure(client, callback(client, started.state), reason, page_status)
    assert message in text
    assert Connection.objects.count() == 0
    assert requests_made(mocked_http) == [("POST", "api.datadoghq.com", "/oauth2/v1/token")]
    assert [r for r, _u in failed] == [reason]


def test_redirect_uri_mismatch_page_shows_the_uri_to_register(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    started = start(client)
    mocked_http.post(
        TOKEN, status=400, json={"errors": ["invalid_request - Mismatching redirect URI"]}
    )
    text = follow_failure(
        client, callback(client, started.state), failures.REDIRECT_URI_MISMATCH, 502
    )
    assert REDIRECT_URI in text


def test_invalid_client_is_our_problem_and_raises_an_alarm(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    started = start(client)
    mocked_http.post(TOKEN, status=401, json={"errors": ["Unauthorized"]})
    text = follow_failure(client, callback(client, started.state), failures.INVALID_CLIENT, 502)
    assert "This is a problem on our side" in text
    assert Alarm.objects.filter(code="invalid_client").exists()


@pytest.mark.parametrize(
    "exc",
    [requests.ConnectTimeout("t"), requests.ConnectionError("refused"), requests.ReadTimeout("r")],
)
def test_datadog_unreachable(
    client: Client, mocked_http: responses.RequestsMock, exc: Exception
) -> None:
    started = start(client)
    mocked_http.post(TOKEN, body=exc)
    text = follow_failure(
        client, callback(client, started.state), failures.DATADOG_UNAVAILABLE, 503
    )
    assert "Wait a minute, then start again" in text


def test_an_unverifiable_certificate_stops_the_flow_with_its_own_page(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    started = start(client)
    refused = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed")
    mocked_http.post(TOKEN, body=requests.exceptions.SSLError(refused))
    text = follow_failure(client, callback(client, started.state), failures.DATADOG_TLS, 502)
    assert "could not be verified" in text
    assert Connection.objects.count() == 0


def test_a_307_from_the_token_endpoint_fails_and_nothing_reaches_the_location(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    started = start(client)
    mocked_http.post(TOKEN, status=307, headers={"Location": "https://evil.example/token"})
    mocked_http.post("https://evil.example/token", json=token_json())
    follow_failure(client, callback(client, started.state), failures.DATADOG_REDIRECT, 502)
    assert requests_made(mocked_http) == [("POST", "api.datadoghq.com", "/oauth2/v1/token")]
    assert Connection.objects.count() == 0


def test_required_scopes_missing_from_the_grant(
    client: Client, mocked_http: responses.RequestsMock, partner_settings: Any
) -> None:
    started = start(client)
    mocked_http.post(TOKEN, json=token_json(scope="events_read"))
    with partner_settings(REQUIRED_SCOPES=["api_keys_write"]):
        response = callback(client, started.state)
    text = follow_failure(client, response, failures.MISSING_SCOPES, 502)
    assert '<p class="detail">Missing: api_keys_write.</p>' in text
    assert "Datadog said" not in text  # the list is ours, not Datadog's words
    assert Connection.objects.count() == 0


# --- Hostile or broken input ----------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "domain=evil.example&site=app.datadoghq.com",
        "domain=datadoghq.com&site=https://evil.example",
        "domain=datadoghq.com&site=app.datadoghq.com@evil.example",
        "domain=datadoghq.com&site=javascript:alert(1)",
        "domain=datadoghq.com.evil.example&site=app.datadoghq.com",
        "domain=datadoghq.com&site=a.b.datadoghq.com",
        "domain=169.254.169.254&site=app.datadoghq.com",
    ],
)
def test_hostile_domain_or_site_at_onboarding(
    client: Client, query: str, failed: list[Any]
) -> None:
    response = client.get(f"{ONBOARDING}?{query}")
    assert response.status_code == 400
    assert "This link does not point to a Datadog site" in response.content.decode()
    assert AuthorizationRequest.objects.count() == 0
    assert [r for r, _u in failed] == [failures.INVALID_SITE]


def test_hostile_input_creates_nothing_for_anonymous_users_either() -> None:
    response = Client().get(f"{ONBOARDING}?domain=evil.example&site=evil.example")
    assert response.status_code == 400
    assert AuthorizationRequest.objects.count() == 0


def test_region_specific_site_must_agree_with_domain_at_onboarding(client: Client) -> None:
    response = client.get(f"{ONBOARDING}?domain=us5.datadoghq.com&site=app.datadoghq.eu")
    assert response.status_code == 400
    assert "does not match" in response.content.decode()
    assert AuthorizationRequest.objects.count() == 0


def test_our_own_reasons_are_never_quoted_as_datadogs_words(client: Client) -> None:
    """Only Datadog's text follows "Datadog said:"; our validation reason stands alone."""
    for query in ("domain=us5.datadoghq.com&site=app.datadoghq.eu", "domain=evil.example"):
        page = client.get(f"{ONBOARDING}?{query}").content.decode()
        assert '<p class="detail">' in page  # the reason is shown…
        assert "Datadog said" not in page  # …as ours


def test_datadogs_own_words_are_quoted_as_such(client: Client) -> None:
    started = start(client)
    query = {"error": "server_error", "error_description": "Try later", "state": started.state}
    response = client.get(CALLBACK, query)
    page = client.get(response["Location"]).content.decode()
    assert '<p>Datadog said:</p>\n<p class="detail">Try later</p>' in page


@pytest.mark.parametrize(
    "domain", ["evil.example", "api.datadoghq.com", "datadoghq.com.evil.example", "127.0.0.1"]
)
def test_hostile_domain_at_callback_sends_nothing(
    client: Client, mocked_http: responses.RequestsMock, domain: str
) -> None:
    started = start(client)
    text = follow_failure(
        client, callback(client, started.state, domain=domain), failures.INVALID_SITE, 400
    )
    assert "not one we know" in text
    assert len(mocked_http.calls) == 0
    assert started.row.used_at is not None
    assert Connection.objects.count() == 0


def test_callback_domain_contradicting_a_regional_site_is_refused(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    started = start(client, "datadoghq.eu", "app.datadoghq.eu")
    response = callback(client, started.state, domain="us5.datadoghq.com")
    follow_failure(client, response, failures.REGION_MISMATCH, 400)
    assert len(mocked_http.calls) == 0


@pytest.mark.parametrize(
    "query",
    [
        "code=a&code=b&state=s",
        "code=a&state=s&state=t",
        "code=a&state=s&domain=datadoghq.com&domain=datadoghq.eu",
        "code=" + "a" * 3000 + "&state=s",
        "code=a&state=" + "s" * 200,
        "code=a%00b&state=s",
        "x=" + "y" * 9000,
    ],
)
def test_malformed_callback_parameters(
    client: Client, mocked_http: responses.RequestsMock, query: str
) -> None:
    follow_failure(client, client.get(f"{CALLBACK}?{query}"), failures.BAD_REQUEST, 400)
    assert len(mocked_http.calls) == 0


def test_malformed_onboarding_parameters(client: Client) -> None:
    for query in (
        "domain=datadoghq.com&domain=datadoghq.eu&site=app.datadoghq.com",
        "domain=datadoghq.com&site=" + "a" * 300,
        "domain=datadoghq.com&site=app.datadoghq.com&site=app.datadoghq.eu",
        "domain=%ff%fe&site=app.datadoghq.com",
    ):
        response = client.get(f"{ONBOARDING}?{query}")
        assert response.status_code == 400, query
    assert AuthorizationRequest.objects.count() == 0


def test_callback_without_code(client: Client, mocked_http: responses.RequestsMock) -> None:
    started = start(client)
    follow_failure(client, callback(client, started.state, code=None), failures.BAD_REQUEST, 400)
    assert started.row.used_at is not None


def test_callback_without_parameters(client: Client) -> None:
    follow_failure(client, client.get(CALLBACK), failures.STATE_MISSING, 400)


def test_callback_when_signed_out(
    client: Client, mocked_http: responses.RequestsMock, alice: Any
) -> None:
    started = start(client)
    client.logout()
    text = follow_failure(client, callback(client, started.state), failures.SIGNED_OUT, 403)
    assert "Sign in, then start again" in text
    # Logging out dropped the session's binding: this browser no longer owns the state, so
    # it is left to expire (nobody else can consume it either).
    assert started.row.used_at is None
    assert len(mocked_http.calls) == 0


STRANGER_ATTEMPTS = {
    "anonymous error": (None, {"error": "access_denied"}, failures.ACCESS_DENIED, 403),
    "signed-in error": ("mallory", {"error": "access_denied"}, failures.ACCESS_DENIED, 403),
    "anonymous code": (None, {"code": "forged"}, failures.SIGNED_OUT, 403),
    "signed-in, no code": ("mallory", {}, failures.BAD_REQUEST, 400),
    "another user's code": ("mallory", {"code": "forged"}, failures.STATE_OTHER_USER, 400),
    "same user, other browser": ("alice", {"code": "forged"}, failures.STATE_OTHER_BROWSER, 400),
}


@pytest.mark.parametrize("attempt", STRANGER_ATTEMPTS.values(), ids=STRANGER_ATTEMPTS.keys())
def test_a_callback_from_another_browser_never_burns_a_live_state(
    client: Client,
    alice: Any,
    django_user_model: Any,
    mocked_http: responses.RequestsMock,
    attempt: tuple[str | None, dict[str, str], str, int],
) -> None:
    """Only the browser that started a flow may spend its state: a stranger who learnt it
    (an anonymous ``?error=access_denied&state=S``, a forged code) sees the failure page
    and the owner's own callback still connects."""
    who, params, reason, status = attempt
    started = start(client)
    users = {"alice": alice, "mallory": make_user(django_user_model, "mallory")}
    stranger = signed_in(users[who]) if who else Client()
    response = stranger.get(CALLBACK, {"state": started.state, **params})
    follow_failure(stranger, response, reason, status)
    assert started.row.used_at is None
    assert len(mocked_http.calls) == 0

    fake_datadog(mocked_http)
    assert callback(client, started.state)["Location"] == CONNECTED
    assert Connection.objects.get().status == ConnectionStatus.ACTIVE


def test_expired_state(client: Client, mocked_http: responses.RequestsMock) -> None:
    from datetime import timedelta

    from django.utils import timezone

    started = start(client)
    AuthorizationRequest.objects.filter(state=started.state).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    text = follow_failure(client, callback(client, started.state), failures.STATE_EXPIRED, 400)
    assert "valid for 10 minutes" in text
    assert len(mocked_http.calls) == 0


def test_replayed_state(client: Client, mocked_http: responses.RequestsMock) -> None:
    started = start(client)
    fake_datadog(mocked_http)
    assert callback(client, started.state)["Location"] == CONNECTED
    before = Connection.objects.get()
    calls = len(mocked_http.calls)
    text = follow_failure(client, callback(client, started.state), failures.STATE_USED, 400)
    assert "already been processed" in text
    assert len(mocked_http.calls) == calls
    after = Connection.objects.get()
    assert (after.pk, after.updated_at) == (before.pk, before.updated_at)


def test_unknown_state(client: Client, mocked_http: responses.RequestsMock) -> None:
    follow_failure(client, callback(client, "A" * 43), failures.STATE_UNKNOWN, 400)
    assert len(mocked_http.calls) == 0


def test_state_of_another_user(
    client: Client, django_user_model: Any, mocked_http: responses.RequestsMock
) -> None:
    started = start(client)
    mallory = signed_in(make_user(django_user_model, "mallory"))
    text = follow_failure(mallory, callback(mallory, started.state), failures.STATE_OTHER_USER, 400)
    assert "another account" in text
    assert len(mocked_http.calls) == 0


def test_state_of_another_browser(
    client: Client, alice: Any, mocked_http: responses.RequestsMock
) -> None:
    started = start(client)
    other_browser = signed_in(alice)
    text = follow_failure(
        other_browser, callback(other_browser, started.state), failures.STATE_OTHER_BROWSER, 400
    )
    assert "different browser" in text
    assert len(mocked_http.calls) == 0


def test_unknown_reason_on_the_error_page_is_generic(client: Client) -> None:
    page = client.get("/datadog/error/?reason=<b>nope</b>")
    assert page.status_code == 400
    assert "<b>nope" not in page.content.decode()


def test_unexpected_errors_give_a_page_not_a_500(
    client: Client, mocked_http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    connect_module = importlib.import_module("django_datadog_partner.connections.connect")

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    started = start(client)
    fake_datadog(mocked_http)
    monkeypatch.setattr(connect_module, "settle", explode)
    follow_failure(client, callback(client, started.state), failures.UNEXPECTED, 503)


# --- API key branches -----------------------------------------------------------------


def connect(client: Client) -> Any:
    started = start(client)
    return callback(client, started.state, dd_oid="org-1")


def test_marketplace_refusal_for_a_token_without_the_scope_names_api_keys_write(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    """The token answer lists the granted scopes, without api_keys_write: the OAuth client
    lacks it, which only the vendor can fix (an alarm)."""
    for status in (401, 403):
        mocked_http.post(TOKEN, json=token_json(scope="events_read"))
        mocked_http.post(MARKETPLACE, status=status, json={"errors": ["Forbidden"]})
        text = follow_failure(client, connect(client), failures.MISSING_API_KEYS_WRITE, 502)
        assert "lacks the api_keys_write permission" in text
        connection = Connection.objects.get()
        assert connection.status == ConnectionStatus.KEY_MISSING
        assert "api_keys_write" in connection.status_reason
        assert connection.last_error_code == "api_keys_write_missing"
        mocked_http.reset()
    assert Alarm.objects.get(code="api_keys_write_missing").count == 2


@pytest.mark.parametrize("scope", ["api_keys_write events_read", None])
def test_marketplace_refusal_for_a_token_with_the_scope_is_the_users_permission(
    client: Client, mocked_http: responses.RequestsMock, scope: str | None
) -> None:
    """Datadog lets a user finish authorising without the permissions the scopes need: a
    401/403 for a token that holds api_keys_write (or whose answer lists no scopes) is
    that user's, told to them, and raises no vendor-wide alarm."""
    for status in (401, 403):
        mocked_http.post(TOKEN, json=token_json(scope=scope))
        mocked_http.post(MARKETPLACE, status=status, json={"errors": ["Forbidden"]})
        text = follow_failure(client, connect(client), failures.USER_CANNOT_CREATE_KEYS, 403)
        assert "Your Datadog user may not create API keys" in text
        assert "API Keys Write permission" in text
        connection = Connection.objects.get()
        assert connection.status == ConnectionStatus.KEY_MISSING
        assert "may not create API keys" in connection.status_reason
        assert connection.last_error_code == "user_cannot_create_keys"
        page = client.get(f"/datadog/connections/{connection.pk}/").content.decode()
        assert "may not create API keys" in page
        assert "Revoke the key named" not in page  # revoking cures a 409, not this
        mocked_http.reset()
    assert not Alarm.objects.exists()


def test_409_without_another_connection_leaves_key_missing_with_instructions(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    mocked_http.post(TOKEN, json=token_json())
    mocked_http.post(
        MARKETPLACE, status=409, json={"errors": ["An API key with this name already exists"]}
    )
    assert connect(client)["Location"] == CONNECTED
    connection = Connection.objects.get()
    assert connection.status == ConnectionStatus.KEY_MISSING
    assert connection.api_key is None
    page = client.get(CONNECTED).content.decode()
    assert "https://app.datadoghq.com/organization-settings/api-keys" in page
    assert "Create the API key again" in page
    # The user still has to act: the instruction comes once, and no "close this tab".
    assert page.count("OAuth Client API Key") == 1
    assert "close this tab" not in page


def test_409_never_lends_another_owners_key(
    client: Client, django_user_model: Any, mocked_http: responses.RequestsMock
) -> None:
    fake_datadog(mocked_http)
    assert connect(client)["Location"] == CONNECTED
    bob = signed_in(make_user(django_user_model, "bob"))
    mocked_http.replace(responses.POST, MARKETPLACE, status=409, json={"errors": ["exists"]})
    mocked_http.calls.reset()
    assert connect(bob)["Location"] == CONNECTED
    first, second = Connection.objects.order_by("pk")
    assert second.status == ConnectionStatus.KEY_MISSING
    assert second.api_key is None and second.api_key_fingerprint == ""
    assert "possibly of another account" in second.status_reason
    # Alice's connection is not even looked at: no validation of her key.
    assert ("GET", "api.datadoghq.com", "/api/v1/validate") not in requests_made(mocked_http)
    first.refresh_from_db()
    assert first.status == ConnectionStatus.ACTIVE
    assert "revoke the key named" in bob.get(CONNECTED).content.decode()


def test_409_on_a_second_connect_keeps_the_owners_only_live_key(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    fake_datadog(mocked_http)
    connect(client)
    mocked_http.replace(responses.POST, MARKETPLACE, status=409, json={"errors": ["exists"]})
    mocked_http.get(VALIDATE, json={"valid": True})
    assert connect(client)["Location"] == CONNECTED
    connection = Connection.objects.get()
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.api_key is not None and connection.api_key.reveal() == API_KEY


def test_409_with_two_live_connections_of_the_owner_picks_neither(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    fake_datadog(mocked_http)
    connect(client)
    mocked_http.replace(responses.POST, MARKETPLACE, json=key_json(OTHER_KEY, "k2"))
    connect(client)  # 201: a second organisation
    assert Connection.objects.count() == 2
    mocked_http.replace(responses.POST, MARKETPLACE, status=409, json={"errors": ["exists"]})
    mocked_http.get(VALIDATE, json={"valid": True})
    assert connect(client)["Location"] == CONNECTED
    third = Connection.objects.order_by("pk").last()
    assert third is not None and third.api_key is None
    assert third.status == ConnectionStatus.KEY_MISSING
    keys = {key_of(c) for c in Connection.objects.exclude(pk=third.pk)}
    assert keys == {API_KEY, OTHER_KEY}


def test_the_marketplace_is_asked_first_and_a_new_key_is_a_new_connection(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    """201 on a second connect: the token's organisation held no key of ours, so it is
    not the organisation of the owner's existing connection (whose key is untouched)."""
    fake_datadog(mocked_http)
    connect(client)
    mocked_http.calls.reset()
    mocked_http.replace(responses.POST, MARKETPLACE, json=key_json(OTHER_KEY, "k2"))
    assert connect(client)["Location"] == CONNECTED
    assert requests_made(mocked_http) == [
        ("POST", "api.datadoghq.com", "/oauth2/v1/token"),
        ("POST", "api.datadoghq.com", "/api/v2/api_keys/marketplace"),
    ]
    first, second = Connection.objects.order_by("pk")
    assert (key_of(first), key_of(second)) == (API_KEY, OTHER_KEY)


@pytest.mark.parametrize(
    ("validate", "in_place"),
    [
        ({"status": 200, "json": {"valid": True}}, False),
        ({"status": 403, "json": {"errors": ["Forbidden"]}}, True),
        ({"status": 200, "json": {"valid": False}}, True),
        ({"status": 503, "body": "down"}, False),
        ({"body": requests.ConnectTimeout("slow")}, False),
    ],
)
def test_a_new_key_on_reconnect_replaces_only_a_dead_key(
    client: Client,
    mocked_http: responses.RequestsMock,
    validate: dict[str, Any],
    in_place: bool,
) -> None:
    """Datadog's recovery (revoke the lost key, authorise again) updates the connection in
    place; a key that still works, or may, means the 201 came from another organisation."""
    fake_datadog(mocked_http)
    connect(client)
    first = Connection.objects.get()
    state = reconnect_state(client, first)
    mocked_http.replace(responses.POST, MARKETPLACE, json=key_json(OTHER_KEY, "k2"))
    mocked_http.get(VALIDATE, **validate)
    assert callback(client, state)["Location"] == CONNECTED
    assert Connection.objects.count() == (1 if in_place else 2)
    first.refresh_from_db()
    assert key_of(first) == (OTHER_KEY if in_place else API_KEY)
    assert first.status == ConnectionStatus.ACTIVE


@pytest.mark.parametrize(
    ("answer", "reason", "status"),
    [
        ({"status": 503, "body": "down"}, failures.DATADOG_UNAVAILABLE, 503),
        ({"status": 403, "json": {"errors": ["Forbidden"]}}, failures.USER_CANNOT_CREATE_KEYS, 403),
        ({"status": 400, "json": {"errors": ["No"]}}, failures.DATADOG_REFUSED, 502),
    ],
)
def test_an_answer_that_names_no_org_changes_no_existing_connection(
    client: Client,
    mocked_http: responses.RequestsMock,
    answer: dict[str, Any],
    reason: str,
    status: int,
) -> None:
    fake_datadog(mocked_http)
    connect(client)
    first = Connection.objects.get()
    state = reconnect_state(client, first)
    mocked_http.replace(responses.POST, TOKEN, json=token_json("access-2"))
    mocked_http.replace(responses.POST, MARKETPLACE, **answer)
    follow_failure(client, callback(client, state), reason, status)
    assert Connection.objects.count() == 1
    first.refresh_from_db()
    assert first.access_token is not None and first.access_token.reveal() == "access-1"
    assert first.status == ConnectionStatus.ACTIVE


def reconnect_state(client: Client, connection: Connection) -> str:
    response = client.post(f"/datadog/connections/{connection.pk}/reconnect/")
    return dict(parse_qsl(urlsplit(response["Location"]).query))["state"]


def key_of(connection: Connection) -> str:
    assert connection.api_key is not None
    return connection.api_key.reveal()


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 500, "body": "oops"},
        {"status": 429, "json": {"errors": ["slow down"]}},
        {"body": requests.ConnectionError("reset")},
        {"status": 201, "json": {"data": {"attributes": {}}}},
        {"status": 201, "body": "not json"},
        {"status": 302, "headers": {"Location": "https://evil.example/"}},
    ],
)
def test_unconfirmed_key_creation_leaves_key_missing_without_retry_loop(
    client: Client, mocked_http: responses.RequestsMock, answer: dict[str, Any]
) -> None:
    mocked_http.post(TOKEN, json=token_json())
    mocked_http.post(MARKETPLACE, **answer)
    assert connect(client)["Location"] == CONNECTED
    connection = Connection.objects.get()
    assert connection.status == ConnectionStatus.KEY_MISSING
    assert "Datadog did not confirm whether it created the API key" in connection.status_reason
    made = requests_made(mocked_http)
    assert made.count(("POST", "api.datadoghq.com", "/api/v2/api_keys/marketplace")) == 1
    assert "Create the API key again" in client.get(CONNECTED).content.decode()


def test_other_marketplace_refusals_keep_datadogs_words(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    mocked_http.post(TOKEN, json=token_json())
    mocked_http.post(MARKETPLACE, status=400, json={"errors": ["Bad <b>thing</b>"]})
    assert connect(client)["Location"] == CONNECTED
    connection = Connection.objects.get()
    assert connection.status == ConnectionStatus.KEY_MISSING
    assert "Datadog refused to create the API key" in connection.status_reason


def test_create_the_api_key_again_retries_the_marketplace_call(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    mocked_http.post(TOKEN, json=token_json())
    mocked_http.post(MARKETPLACE, status=409, json={"errors": ["exists"]})
    connect(client)
    connection = Connection.objects.get()
    mocked_http.replace(responses.POST, MARKETPLACE, json=key_json(), status=201)
    response = client.post(f"/datadog/connections/{connection.pk}/api-key/")
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "The API key is in place" in page
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.api_key is not None and connection.api_key.reveal() == API_KEY
    assert mocked_http.calls[-1].request.headers["Authorization"] == "Bearer access-1"


def test_create_the_api_key_again_still_409_repeats_the_instructions(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    mocked_http.post(TOKEN, json=token_json())
    mocked_http.post(MARKETPLACE, status=409, json={"errors": ["exists"]})
    connect(client)
    connection = Connection.objects.get()
    response = client.post(f"/datadog/connections/{connection.pk}/api-key/")
    page = client.get(response["Location"]).content.decode()
    assert "revoke the key named" in page
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.KEY_MISSING


def test_create_the_api_key_again_on_a_revoked_connection_asks_to_reconnect(
    client: Client, mocked_http: responses.RequestsMock
) -> None:
    fake_datadog(mocked_http)
    connect(client)
    connection = Connection.objects.get()
    Connection.objects.filter(pk=connection.pk).update(status=ConnectionStatus.NEEDS_RECONNECT)
    calls = len(mocked_http.calls)
    response = client.post(f"/datadog/connections/{connection.pk}/api-key/")
    page = client.get(response["Location"]).content.decode()
    assert "must be reconnected" in page
    assert len(mocked_http.calls) == calls


def test_hostile_input_cannot_forge_log_lines(
    client: Client, debug_logs: pytest.LogCaptureFixture
) -> None:
    response = client.get(ONBOARDING, {"domain": "x\r\nFAKE LOG LINE", "site": "app.datadoghq.com"})
    assert response.status_code == 400
    text = debug_logs.text.lower()
    assert "\\r\\nfake log line" in text  # logged, but encoded on the same line
    assert not any(line.startswith("fake") for line in text.splitlines())


def test_connected_page_without_a_result_goes_to_the_connection_list(client: Client) -> None:
    response = client.get(CONNECTED)
    assert response.status_code == 302
    assert response["Location"] == "/datadog/connections/"
