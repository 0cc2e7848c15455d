"""OAuth 2.0 with Datadog: PKCE, the authorize URL, code exchange, refresh and revoke.

Every request goes through ``client.DatadogClient`` (one session, no redirects, host
allowlist). oauthlib builds the token request bodies; it never sends a request, parses a
response or checks the transport here, because those paths depend on process-wide
environment switches (``OAUTHLIB_INSECURE_TRANSPORT``, ``OAUTHLIB_RELAX_TOKEN_SCOPE``…)
and its PKCE helper silently falls back to ``plain``. Token responses are validated
strictly so that nothing is persisted from a malformed answer.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from oauthlib.oauth2.rfc6749.parameters import prepare_token_request

from .client import DatadogClient, Verdict, classify, json_body, retry_error
from .conf import app_settings
from .exceptions import (
    InvalidClientError,
    OAuthError,
    UnreadableAnswerError,
    datadog_error_messages,
)
from .regions import Site

AUTHORIZE_PATH = "/oauth2/v1/authorize"
TOKEN_PATH = "/oauth2/v1/token"
REVOKE_PATH = "/oauth2/v1/revoke"

VERIFIER_BYTES = 48  # 64 base64url characters (RFC 7636 allows 43-128).
DEFAULT_EXPIRES_IN = 3600  # Datadog documents a one-hour access token.
MIN_EXPIRES_IN = 60
MAX_EXPIRES_IN = 86_400
MAX_TOKEN_LENGTH = 4096
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}

#: The error code of a 2xx token answer that does not hold a usable token.
INVALID_TOKEN_RESPONSE = "invalid_token_response"


@dataclass(frozen=True)
class TokenSet:
    """Tokens from one token-endpoint answer; ``repr`` never shows them."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime
    scopes: list[str]


# --- PKCE and the authorize URL --------------------------------------------------------


def code_challenge_for(verifier: str) -> str:
    """S256: base64url(SHA-256(ascii(verifier))) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_pkce_pair() -> tuple[str, str]:
    """A fresh ``(verifier, challenge)``; the method is always S256, never ``plain``."""
    verifier = secrets.token_urlsafe(VERIFIER_BYTES)
    return verifier, code_challenge_for(verifier)


def authorization_url(
    web_site_url: str, *, state: str, code_challenge: str, redirect_uri: str
) -> str:
    """Where to send the browser: ``<site>/oauth2/v1/authorize`` with state and PKCE.

    ``web_site_url`` must come from ``regions.validate_site`` (never raw input).
    """
    if not state or not code_challenge:
        raise ValueError("state and code_challenge are both required.")
    params = [
        ("response_type", "code"),
        ("client_id", app_settings.CLIENT_ID),
        ("redirect_uri", redirect_uri),
        ("state", state),
        ("code_challenge", code_challenge),
        ("code_challenge_method", "S256"),
    ]
    scopes = app_settings.SCOPES
    if scopes:
        params.append(("scope", " ".join(scopes)))
    return f"{web_site_url.rstrip('/')}{AUTHORIZE_PATH}?{urlencode(params)}"


# --- Token endpoint ---------------------------------------------------------------------


@sensitive_variables()
def exchange_code(site: Site, *, code: str, code_verifier: str, redirect_uri: str) -> TokenSet:
    """Trade an authorization code for tokens at ``https://api.<domain>/oauth2/v1/token``."""
    body = prepare_token_request(
        "authorization_code",
        client_id=app_settings.CLIENT_ID,
        client_secret=app_settings.CLIENT_SECRET,
        code=code,
        code_verifier=code_verifier,
        redirect_uri=redirect_uri,
    )
    return _token_request(site, body)


@sensitive_variables()
def refresh_tokens(site: Site, refresh_token: str) -> TokenSet:
    """A new access token; ``TokenSet.refresh_token`` is None when Datadog sent none."""
    body = prepare_token_request(
        "refresh_token",
        client_id=app_settings.CLIENT_ID,
        client_secret=app_settings.CLIENT_SECRET,
        refresh_token=refresh_token,
    )
    return _token_request(site, body)


@sensitive_variables()
def revoke_token(site: Site, token: str, token_type_hint: str, *, bearer: str | None) -> None:
    """RFC 7009 revoke; Datadog answers 200 for unknown tokens too, so this is idempotent.

    Sent as Datadog's example does: the client credentials in the body, and ``bearer`` (an
    access token of the grant; None: not sent) as ``Authorization: Bearer``.
    """
    client = DatadogClient(site)
    headers = {**FORM_HEADERS, "Authorization": f"Bearer {bearer}"} if bearer else FORM_HEADERS
    body = urlencode(
        [
            ("client_id", app_settings.CLIENT_ID),
            ("client_secret", app_settings.CLIENT_SECRET),
            ("token", token),
            ("token_type_hint", token_type_hint),
        ]
    )
    response = client.request("POST", client.api_url(REVOKE_PATH), headers=headers, data=body)
    if not 200 <= response.status_code < 300:
        raise _error_for(response, "revoke")


@sensitive_variables()
def _token_request(site: Site, body: str) -> TokenSet:
    client = DatadogClient(site)
    response = client.request("POST", client.api_url(TOKEN_PATH), headers=FORM_HEADERS, data=body)
    if not 200 <= response.status_code < 300:
        raise _error_for(response, "token")
    return parse_token_response(response)


@sensitive_variables()
def parse_token_response(response: requests.Response) -> TokenSet:
    """Validate a 2xx token answer field by field; raise rather than return a partial set."""
    try:
        data = json_body(response)
    except UnreadableAnswerError:
        raise _invalid_response(response, "the answer is not readable JSON") from None
    if not isinstance(data, dict):
        raise _invalid_response(response, "the answer is not a JSON object")
    access_token = data.get("access_token")
    if not _is_token(access_token):
        raise _invalid_response(response, "access_token is missing or malformed")
    token_type = data.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise _invalid_response(response, "token_type is not bearer")
    refresh_token = data.get("refresh_token")
    if refresh_token is not None and not _is_token(refresh_token):
        raise _invalid_response(response, "refresh_token is malformed")
    scopes = _parse_scopes(data.get("scope"))
    if scopes is None:
        raise _invalid_response(response, "scope is malformed")
    expires_in = _parse_expires_in(data.get("expires_in"))
    if expires_in is None:
        raise _invalid_response(response, "expires_in is not a number")
    return TokenSet(
        access_token=str(access_token),
        refresh_token=refresh_token,
        expires_at=timezone.now() + timedelta(seconds=expires_in),
        scopes=scopes,
    )


def _is_token(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TOKEN_LENGTH
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def _parse_scopes(value: Any) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    return None


def _parse_expires_in(value: Any) -> int | None:
    """Seconds, clamped to [1 min, 1 day]; absent means Datadog's documented hour."""
    if value is None:
        return DEFAULT_EXPIRES_IN
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or value != value:  # NaN
        return None
    return int(min(max(value, MIN_EXPIRES_IN), MAX_EXPIRES_IN))


# --- Error classification ----------------------------------------------------------------


def split_error(response: requests.Response) -> tuple[str, str]:
    """``(error_code, description)`` from RFC 6749 or ``{"errors": ["code - text"]}`` bodies."""
    messages = datadog_error_messages(response)
    if not messages:
        return "", ""
    first = messages[0]
    code, sep, description = first.partition(" - ")
    if sep and _looks_like_code(code):
        return code, description
    if _looks_like_code(first):
        return first, ""
    return "", first


def _looks_like_code(value: str) -> bool:
    return bool(value) and len(value) <= 64 and all(c.islower() or c == "_" for c in value)


def _error_for(response: requests.Response, endpoint: str) -> Exception:
    answer = classify(response)
    code, description = split_error(response)
    if (transient := retry_error(answer, response, f"the {endpoint} endpoint")) is not None:
        return transient
    if code == "invalid_client" or answer.verdict is Verdict.UNAUTHORIZED:
        return InvalidClientError(
            f"Datadog refused this OAuth client's credentials at the {endpoint} endpoint.",
            error_code=code or "invalid_client",
            description=description,
            response=response,
        )
    return OAuthError(
        f"Datadog refused the {endpoint} request.",
        error_code=code,
        description=description,
        response=response,
    )


def _invalid_response(response: requests.Response, why: str) -> OAuthError:
    return OAuthError(
        f"Datadog's token answer is unusable: {why}.",
        error_code=INVALID_TOKEN_RESPONSE,
        description=why,
        status_code=response.status_code,
    )
