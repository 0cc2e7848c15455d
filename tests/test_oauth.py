"""oauth.py: PKCE, the authorize URL, token exchange/refresh/revoke and error parsing."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import responses
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from oauthlib.oauth2 import WebApplicationClient

from django_datadog_partner import oauth
from django_datadog_partner.exceptions import (
    ConfigurationError,
    InvalidClientError,
    OAuthError,
    RateLimitedError,
    RetryableError,
    TransportRefusedError,
)
from django_datadog_partner.regions import get_site

US1 = get_site("datadoghq.com")
EU1 = get_site("datadoghq.eu")
TOKEN_URL = "https://api.datadoghq.com/oauth2/v1/token"
REVOKE_URL = "https://api.datadoghq.com/oauth2/v1/revoke"
REDIRECT_URI = "https://vendor.example/datadog/callback/"


def token_body(**fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "access_token": "at-1",
        "refresh_token": "rt-1",
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "api_keys_write events_read",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


# --- PKCE ---------------------------------------------------------------------------------


def test_rfc7636_appendix_b_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
    assert oauth.code_challenge_for(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize("verifier", ["abcd" * 11, "/" * 43, "a+b/c=" * 8])
def test_challenge_is_base64url_without_padding_and_matches_oauthlib_s256(verifier: str) -> None:
    challenge = oauth.code_challenge_for(verifier)
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    assert challenge == expected.decode().rstrip("=")
    assert not set(challenge) & set("+/=")
    assert challenge == WebApplicationClient("x").create_code_challenge(verifier, "S256")


def test_new_pkce_pair_is_fresh_long_unreserved_and_s256() -> None:
    pairs = {oauth.new_pkce_pair() for _ in range(200)}
    assert len(pairs) == 200
    for verifier, challenge in pairs:
        assert 43 <= len(verifier) <= 128
        assert re.fullmatch(r"[A-Za-z0-9\-._~]+", verifier)
        assert challenge != verifier
        assert challenge == oauth.code_challenge_for(verifier)


# --- Authorize URL ------------------------------------------------------------------------


def test_authorization_url_has_every_parameter_and_always_s256() -> None:
    url = oauth.authorization_url(
        "https://acme.datadoghq.eu", state="s" * 43, code_challenge="c" * 43,
        redirect_uri=REDIRECT_URI,
    )  # fmt: skip
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "acme.datadoghq.eu",
        "/oauth2/v1/authorize",
    )
    assert parse_qsl(parts.query) == [
        ("response_type", "code"),
        ("client_id", "test-client-id"),
        ("redirect_uri", REDIRECT_URI),
        ("state", "s" * 43),
        ("code_challenge", "c" * 43),
        ("code_challenge_method", "S256"),
    ]


def test_authorization_url_sends_scope_only_when_configured(partner_settings: Any) -> None:
    with partner_settings(SCOPES=["api_keys_write", "events_read"]):
        url = oauth.authorization_url(
            "https://app.datadoghq.com", state="s", code_challenge="c", redirect_uri=REDIRECT_URI
        )
    assert parse_qs(urlsplit(url).query)["scope"] == ["api_keys_write events_read"]


@pytest.mark.parametrize(("state", "challenge"), [("", "c"), ("s", "")])
def test_authorization_url_never_omits_state_or_challenge(state: str, challenge: str) -> None:
    with pytest.raises(ValueError):
        oauth.authorization_url(
            "https://app.datadoghq.com",
            state=state,
            code_challenge=challenge,
            redirect_uri=REDIRECT_URI,
        )


# --- Code exchange ------------------------------------------------------------------------


def test_exchange_code_posts_the_documented_form_body(mocked_http: responses.RequestsMock) -> None:
    mocked_http.post(TOKEN_URL, json=token_body())
    tokens = oauth.exchange_code(
        US1, code="the-code", code_verifier="the-verifier", redirect_uri=REDIRECT_URI
    )
    (call,) = mocked_http.calls
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(str(call.request.body))) == {
        "grant_type": "authorization_code",
        "client_id": "test-client-id",
        "client_secret": "test-client-secret",
        "code": "the-code",
        "code_verifier": "the-verifier",
        "redirect_uri": REDIRECT_URI,
    }
    assert urlsplit(call.request.url).query == ""
    assert tokens.access_token == "at-1"
    assert tokens.refresh_token == "rt-1"
    assert tokens.scopes == ["api_keys_write", "events_read"]
    delta = (tokens.expires_at - timezone.now()).total_seconds()
    assert 3590 < delta <= 3600


def test_exchange_code_uses_the_sites_api_host(mocked_http: responses.RequestsMock) -> None:
    mocked_http.post("https://api.datadoghq.eu/oauth2/v1/token", json=token_body())
    oauth.exchange_code(EU1, code="c", code_verifier="v", redirect_uri=REDIRECT_URI)
    assert [urlsplit(c.request.url).netloc for c in mocked_http.calls] == ["api.datadoghq.eu"]


def test_client_secret_callable_is_read_per_request(
    mocked_http: responses.RequestsMock, partner_settings: Any
) -> None:
    mocked_http.post(TOKEN_URL, json=token_body())
    with partner_settings(CLIENT_SECRET=lambda: "rotated-secret"):
        oauth.exchange_code(US1, code="c", code_verifier="v", redirect_uri=REDIRECT_URI)
    assert (
        dict(parse_qsl(str(mocked_http.calls[0].request.body)))["client_secret"] == "rotated-secret"
    )


def test_token_set_repr_hides_tokens(mocked_http: responses.RequestsMock) -> None:
    mocked_http.post(
        TOKEN_URL, json=token_body(access_token="AT-SECRET", refresh_token="RT-SECRET")
    )
    tokens = oauth.exchange_code(US1, code="c", code_verifier="v", redirect_uri=REDIRECT_URI)
    assert "AT-SECRET" not in repr(tokens) + str(tokens)
    assert "RT-SECRET" not in repr(tokens) + str(tokens)


def test_redirect_from_token_endpoint_is_refused_and_not_followed(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.post(TOKEN_URL, status=307, headers={"Location": "https://evil.example/steal"})
    mocked_http.post("https://evil.example/steal", json=token_body())
    with pytest.raises(TransportRefusedError):
        oauth.exchange_code(US1, code="c", code_verifier="v", redirect_uri=REDIRECT_URI)
    assert [urlsplit(c.request.url).netloc for c in mocked_http.calls] == ["api.datadoghq.com"]


# --- Token response validation (AT-22) ----------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [(None, 3600), (-5, 60), (0, 60), (10**12, 86400), ("1800", 1800), (7200.9, 7200)],
)
def test_expires_in_is_defaulted_and_clamped(
    mocked_http: responses.RequestsMock, expires_in: object, seconds: int
) -> None:
    mocked_http.post(TOKEN_URL, json=token_body(expires_in=expires_in))
    tokens = oauth.refresh_tokens(US1, "rt-0")
    delta = (tokens.expires_at - timezone.now()).total_seconds()
    assert seconds - 10 < delta <= seconds


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html>502 Bad Gateway</html>", "content_type": "text/html"},
        {"body": "access_token=x&token_type=bearer"},
        {"json": ["access_token"]},
        {"json": token_body(access_token=None)},
        {"json": token_body(access_token="")},
        {"json": token_body(access_token=12345)},
        {"json": token_body(access_token="has space")},
        {"json": token_body(access_token="x" * 5000)},
        {"json": token_body(token_type="mac")},
        {"json": token_body(token_type=7)},
        {"json": token_body(refresh_token="")},
        {"json": token_body(refresh_token=["rt"])},
        {"json": token_body(expires_in="soon")},
        {"json": token_body(expires_in=True)},
        {"json": token_body(scope={"a": 1})},
    ],
)
def test_malformed_token_answers_are_rejected(
    mocked_http: responses.RequestsMock, answer: dict[str, object]
) -> None:
    mocked_http.post(TOKEN_URL, status=200, **answer)
    with pytest.raises(OAuthError) as info:
        oauth.exchange_code(US1, code="c", code_verifier="v", redirect_uri=REDIRECT_URI)
    assert info.value.error_code == oauth.INVALID_TOKEN_RESPONSE


def test_refresh_without_refresh_token_gives_none(mocked_http: responses.RequestsMock) -> None:
    mocked_http.post(TOKEN_URL, json=token_body(refresh_token=None, scope=None, token_type=None))
    tokens = oauth.refresh_tokens(US1, "rt-0")
    assert tokens.refresh_token is None
    assert tokens.scopes == []
    body = dict(parse_qsl(str(mocked_http.calls[0].request.body)))
    assert body == {
        "grant_type": "refresh_token",
        "client_id": "test-client-id",
        "client_secret": "test-client-secret",
        "refresh_token": "rt-0",
    }


# --- Errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code", "description"),
    [
        (
            400,
            {"errors": ["invalid_grant - Invalid authorization code or code verifier."]},
            "invalid_grant",
            "Invalid authorization code or code verifier.",
        ),
        (
            400,
            {"error": "invalid_grant", "error_description": "Code expired"},
            "invalid_grant",
            "Code expired",
        ),
        (
            400,
            {"errors": ["invalid_request - Invalid client_id parameter value"]},
            "invalid_request",
            "Invalid client_id parameter value",
        ),
        (
            400,
            {"errors": ["invalid_request - Mismatching redirect URI"]},
            "invalid_request",
            "Mismatching redirect URI",
        ),
        (400, {"errors": ["Invalid code or code verifier"]}, "", "Invalid code or code verifier"),
        (403, {"errors": ["Forbidden"]}, "", "Forbidden"),
        (400, {"error": "invalid_scope"}, "invalid_scope", ""),
    ],
)
def test_token_errors_keep_code_and_description(
    mocked_http: responses.RequestsMock, status: int, body: object, code: str, description: str
) -> None:
    mocked_http.post(TOKEN_URL, status=status, json=body)
    with pytest.raises(OAuthError) as info:
        oauth.exchange_code(US1, code="c", code_verifier="v", redirect_uri=REDIRECT_URI)
    assert not isinstance(info.value, ConfigurationError)
    assert (info.value.error_code, info.value.description) == (code, description)
    assert info.value.status_code == status


@pytest.mark.parametrize(
    ("status", "body"),
    [(401, {"errors": ["Unauthorized"]}), (400, {"error": "invalid_client"}), (401, None)],
)
def test_invalid_client_is_our_configuration_error(
    mocked_http: responses.RequestsMock, status: int, body: object
) -> None:
    mocked_http.post(TOKEN_URL, status=status, json=body)
    with pytest.raises(InvalidClientError) as info:
        oauth.refresh_tokens(US1, "rt-0")
    assert isinstance(info.value, ImproperlyConfigured)
    assert isinstance(info.value, OAuthError)
    assert info.value.error_code == "invalid_client"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retryable(mocked_http: responses.RequestsMock, status: int) -> None:
    mocked_http.post(TOKEN_URL, status=status, body="<html>oops</html>")
    with pytest.raises(RetryableError):
        oauth.refresh_tokens(US1, "rt-0")


def test_timeouts_are_retryable(mocked_http: responses.RequestsMock) -> None:
    import requests

    mocked_http.post(TOKEN_URL, body=requests.ConnectTimeout("boom"))
    with pytest.raises(RetryableError):
        oauth.refresh_tokens(US1, "rt-0")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "37"}, 37.0),
        ({"X-RateLimit-Reset": "12"}, 12.0),
        ({"Retry-After": "junk"}, 60.0),
        ({"Retry-After": "-4"}, 1.0),
        ({"Retry-After": "99999999"}, 3600.0),
        ({}, 60.0),
    ],
)
def test_429_is_rate_limited_with_a_clamped_wait(
    mocked_http: responses.RequestsMock, headers: dict[str, str], expected: float
) -> None:
    mocked_http.post(TOKEN_URL, status=429, json={"errors": ["Too many"]}, headers=headers)
    with pytest.raises(RateLimitedError) as info:
        oauth.refresh_tokens(US1, "rt-0")
    assert info.value.retry_after == expected


# --- Revoke -------------------------------------------------------------------------------


def test_revoke_posts_client_credentials_token_and_bearer(
    mocked_http: responses.RequestsMock,
) -> None:
    """As Datadog's curl example: body credentials and ``Authorization: Bearer``."""
    mocked_http.post(REVOKE_URL, status=200, body="")
    oauth.revoke_token(US1, "rt-9", "refresh_token", bearer="at-9")
    oauth.revoke_token(US1, "rt-9", "refresh_token", bearer=None)
    with_bearer, without = mocked_http.calls
    assert dict(parse_qsl(str(with_bearer.request.body))) == {
        "client_id": "test-client-id",
        "client_secret": "test-client-secret",
        "token": "rt-9",
        "token_type_hint": "refresh_token",
    }
    assert with_bearer.request.headers["Authorization"] == "Bearer at-9"
    assert "Authorization" not in without.request.headers


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, RetryableError),
        (500, RetryableError),
        (400, OAuthError),
        (401, InvalidClientError),
        (429, RateLimitedError),
    ],
)
def test_revoke_errors(
    mocked_http: responses.RequestsMock, status: int, error: type[Exception]
) -> None:
    mocked_http.post(REVOKE_URL, status=status, json={"errors": ["invalid_request - bad"]})
    with pytest.raises(error):
        oauth.revoke_token(US1, "at-9", "access_token", bearer="at-9")


def test_revoke_timeout_is_retryable(mocked_http: responses.RequestsMock) -> None:
    import requests

    mocked_http.post(REVOKE_URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(RetryableError):
        oauth.revoke_token(US1, "at-9", "access_token", bearer="at-9")


def test_error_text_never_contains_request_secrets(mocked_http: responses.RequestsMock) -> None:
    mocked_http.post(TOKEN_URL, status=400, json={"errors": ["invalid_grant - nope"]})
    with pytest.raises(OAuthError) as info:
        oauth.exchange_code(
            US1, code="CODE-CANARY", code_verifier="VERIFIER-CANARY", redirect_uri=REDIRECT_URI
        )
    text = str(info.value) + repr(info.value) + json.dumps(info.value.args)
    for secret in ("CODE-CANARY", "VERIFIER-CANARY", "test-client-secret"):
        assert secret not in text
