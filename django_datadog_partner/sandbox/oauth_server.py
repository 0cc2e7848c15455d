"""The OAuth side of the fake Datadog: authorize checks, token, revoke, marketplace key.

The only client it knows is the project's own (``CLIENT_ID``/``CLIENT_SECRET``), with one
registered redirect URI: ``BASE_URL`` + the ``datadog_partner:callback`` route.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode

from django.urls import NoReverseMatch, reverse

from ..conf import app_settings
from ..regions import all_sites
from .intake import Refused
from .protocol import NO_STORE, Answer, Context, Request, answer, api_errors, oauth_error
from .state import Code, Org, Token, digest

CODE_LIFETIME = timedelta(seconds=120)
#: How long Datadog's UI can restore a revoked API key (DataDog/documentation PR #38481).
KEY_RESTORE_WINDOW = timedelta(days=7)
ACCESS_LIFETIME = timedelta(hours=1)
DEFAULT_SCOPES = ["api_keys_write"]
KEY_SCOPE = "api_keys_write"
CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
SCOPE = re.compile(r"^[a-z_]{1,64}$")
BAD_CODE = "Invalid authorization code or code verifier."
BAD_REFRESH = "The refresh token is invalid, expired or revoked."
KEY_CONFLICT = "An API key with this name already exists"


def registered_redirect_uris() -> list[str]:
    try:
        return [app_settings.BASE_URL + reverse("datadog_partner:callback")]
    except NoReverseMatch:
        return []


def client_is_known(client_id: str) -> bool:
    return bool(client_id) and hmac.compare_digest(client_id, app_settings.CLIENT_ID)


def pkce_challenge(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


# --- /oauth2/v1/authorize -------------------------------------------------------------


class AuthorizeError(Exception):
    """``redirect`` False: show Datadog's own error page; True: send ``error`` back."""

    def __init__(self, code: str, description: str, *, redirect: bool) -> None:
        self.code, self.description, self.redirect = code, description, redirect
        super().__init__(f"{code} - {description}")


@dataclass(frozen=True)
class AuthorizeRequest:
    client_id: str
    redirect_uri: str
    state: str
    code_challenge: str
    scopes: list[str]


def parse_authorize(query: dict[str, str]) -> tuple[AuthorizeRequest, AuthorizeError | None]:
    """Check an authorize request the way Datadog does before showing the consent page.

    Raises ``AuthorizeError(redirect=False)`` for an unknown client or redirect URI (no
    redirect may happen); other problems come back to be redirected to the client.
    """
    client_id = query.get("client_id", "")
    redirect_uri = query.get("redirect_uri", "")
    if not client_is_known(client_id):
        raise AuthorizeError("invalid_request", "Invalid client_id parameter value", redirect=False)
    if redirect_uri not in registered_redirect_uris():
        raise AuthorizeError("invalid_request", "Mismatching redirect URI", redirect=False)
    scopes = query.get("scope", "").split() or list(DEFAULT_SCOPES)
    request = AuthorizeRequest(
        client_id, redirect_uri, query.get("state", ""), query.get("code_challenge", ""), scopes
    )
    problem = None
    if query.get("response_type") != "code":
        problem = AuthorizeError(
            "unsupported_response_type", "response_type must be code", redirect=True
        )
    elif not CHALLENGE.match(request.code_challenge):
        problem = AuthorizeError(
            "invalid_request", "PKCE code_challenge is required", redirect=True
        )
    elif query.get("code_challenge_method") != "S256":
        problem = AuthorizeError(
            "invalid_request", "code_challenge_method must be S256", redirect=True
        )
    elif not all(SCOPE.match(scope) for scope in scopes):
        problem = AuthorizeError("invalid_scope", "Unknown scope requested", redirect=True)
    return request, problem


def issue_code(ctx: Context, request: AuthorizeRequest, org_id: int, user_id: int) -> str:
    code = secrets.token_urlsafe(32)
    ctx.store.add_code(
        Code(
            code_hash=digest(code),
            org_id=org_id,
            user_id=user_id,
            redirect_uri=request.redirect_uri,
            code_challenge=request.code_challenge,
            scopes=request.scopes,
            expires_at=ctx.now() + CODE_LIFETIME,
        )
    )
    return code


def callback_url(request: AuthorizeRequest, params: dict[str, str]) -> str:
    if request.state:
        params = {**params, "state": request.state}
    separator = "&" if "?" in request.redirect_uri else "?"
    return request.redirect_uri + separator + urlencode(params)


def success_params(ctx: Context, code: str, org: Org) -> dict[str, str]:
    """``code`` and ``domain`` (documented), then ``site``, ``dd_oid`` and ``dd_org_name``
    as Datadog also sends them, unless the org is switched to the bare form."""
    params = {"code": code, "domain": ctx.domain}
    if not ctx.store.faults(org.id).bare_callback:
        site = all_sites().get(ctx.domain)
        if site is not None:
            params["site"] = site.web_url
        params.update(dd_oid=org.public_id, dd_org_name=org.name)
    return params


# --- /oauth2/v1/token and /oauth2/v1/revoke ------------------------------------------


def _form(request: Request) -> dict[str, str]:
    """Datadog accepts form-encoded or JSON bodies; anything else fails like a bad code."""
    if request.content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(request.body.decode(errors="replace")))
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body)
        except (ValueError, RecursionError):  # ``[[[…`` from anyone: refused, no 500
            data = None
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
    raise Refused(oauth_error(400, "invalid_request", "Invalid code or code verifier"))


def _authenticate_client(form: dict[str, str]) -> None:
    if not form.get("client_secret"):
        raise Refused(oauth_error(401, "invalid_client", "Client authentication failed"))
    if not client_is_known(form.get("client_id", "")):
        raise Refused(oauth_error(400, "invalid_request", "Invalid client_id parameter value"))
    if not hmac.compare_digest(form["client_secret"], app_settings.CLIENT_SECRET):
        raise Refused(oauth_error(401, "invalid_client", "Client authentication failed"))


def token(request: Request, ctx: Context) -> Answer:
    form = _form(request)
    _authenticate_client(form)
    grant_type = form.get("grant_type", "")
    if grant_type == "authorization_code":
        return _exchange_code(form, ctx)
    if grant_type == "refresh_token":
        return _refresh(form, ctx)
    return oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type {grant_type[:40]!r}")


def _exchange_code(form: dict[str, str], ctx: Context) -> Answer:
    for name in ("code", "redirect_uri", "code_verifier"):
        if not form.get(name):
            return oauth_error(400, "invalid_request", f"Missing parameter: {name}")
    code, replayed = ctx.store.take_code(digest(form["code"]))
    if code is None:
        return oauth_error(400, "invalid_grant", BAD_CODE)
    if replayed:
        # RFC 6749 §4.1.2: a reused code revokes what it was exchanged for.
        ctx.store.revoke_grant_of_code(code.code_hash)
        return oauth_error(400, "invalid_grant", BAD_CODE)
    if code.expires_at < ctx.now():
        return oauth_error(400, "invalid_grant", BAD_CODE)
    if form["redirect_uri"] != code.redirect_uri:
        return oauth_error(400, "invalid_request", "Mismatching redirect URI")
    verifier = form["code_verifier"]
    if not VERIFIER.match(verifier) or pkce_challenge(verifier) != code.code_challenge:
        return oauth_error(400, "invalid_grant", BAD_CODE)
    grant_id = ctx.store.add_grant(code)
    return issue_tokens(ctx, grant_id, code.scopes)


def _refresh(form: dict[str, str], ctx: Context) -> Answer:
    if not form.get("refresh_token"):
        return oauth_error(400, "invalid_request", "Missing parameter: refresh_token")
    found = ctx.store.find_token(digest(form["refresh_token"]))
    if found is None or found.kind != "refresh":
        return oauth_error(400, "invalid_grant", BAD_REFRESH)
    faults = ctx.store.faults(found.org.id)
    if faults.slow_seconds:
        ctx.sleep(faults.slow_seconds)
    if faults.refresh_invalid_grant or not found.usable:
        return oauth_error(400, "invalid_grant", BAD_REFRESH)
    if not faults.rotate_refresh_tokens:
        return issue_tokens(ctx, found.grant_id, found.scopes, refresh=form["refresh_token"])
    if not ctx.store.rotate_token(found.token_hash):
        return oauth_error(400, "invalid_grant", BAD_REFRESH)
    return issue_tokens(ctx, found.grant_id, found.scopes)


def issue_tokens(
    ctx: Context, grant_id: int, scopes: list[str], *, refresh: str | None = None
) -> Answer:
    """A new access token, and a new refresh token unless ``refresh`` (kept valid) is given."""
    access = secrets.token_urlsafe(32)
    ctx.store.add_token(grant_id, "access", digest(access), ctx.now() + ACCESS_LIFETIME)
    if refresh is None:
        refresh = secrets.token_urlsafe(32)
        ctx.store.add_token(grant_id, "refresh", digest(refresh), None)
    body = {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": int(ACCESS_LIFETIME.total_seconds()),
        "scope": " ".join(scopes),
    }
    return answer(200, body, NO_STORE)


def revoke(request: Request, ctx: Context) -> Answer:
    """RFC 7009: 200 for revoked and for unknown tokens alike. Datadog's example also sends
    ``Authorization: Bearer <access token>``; with the org's ``revoke_needs_bearer`` a
    revoke without a usable one answers 401."""
    form = _form(request)
    _authenticate_client(form)
    if not form.get("token"):
        return oauth_error(400, "invalid_request", "Missing parameter: token")
    found = ctx.store.find_token(digest(form["token"]))
    if found is not None:
        if ctx.store.faults(found.org.id).revoke_needs_bearer:
            _check_bearer(request, ctx, found.org)
        ctx.store.revoke_token(found.token_hash, whole_grant=found.kind == "refresh")
    return answer(200, {}, NO_STORE)


def _check_bearer(request: Request, ctx: Context, org: Org) -> None:
    try:
        bearer = bearer_token(request, ctx)
    except Refused:
        bearer = None
    if bearer is None or bearer.kind != "access" or bearer.org.id != org.id:
        raise Refused(api_errors(401, "Unauthorized"))


# --- /api/v2/api_keys/marketplace -----------------------------------------------------


def bearer_token(request: Request, ctx: Context) -> Token:
    scheme, _sep, value = request.header("authorization").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Refused(api_errors(401, "Unauthorized"))
    found = ctx.store.find_token(digest(value.strip()))
    expired = found is not None and found.expires_at is not None and found.expires_at < ctx.now()
    if found is None or not found.usable or expired:
        raise Refused(api_errors(403, "Forbidden"))
    return found


def create_marketplace_key(request: Request, ctx: Context) -> Answer:
    """The org's API key, shown once; a second call while it exists answers 409."""
    found = bearer_token(request, ctx)
    faults = ctx.store.faults(found.org.id)
    if faults.slow_seconds:
        ctx.sleep(faults.slow_seconds)
    if faults.key_creation == "403" or KEY_SCOPE not in found.scopes:
        return api_errors(403, "Forbidden")
    restorable = ctx.store.revoked_since(found.org.id, ctx.now() - KEY_RESTORE_WINDOW)
    if faults.key_creation == "409" or (faults.restorable_key_conflict and restorable):
        return api_errors(409, KEY_CONFLICT)
    key, key_id = secrets.token_hex(16), str(uuid.uuid4())
    name = f"OAuth Client API Key {key_id[:8]}"
    stored = ctx.store.add_key_unless_active(
        found.org.id, found.user_id, key_id, digest(key), key[-4:], name
    )
    if not stored:
        return api_errors(409, KEY_CONFLICT)
    now = ctx.now().isoformat()
    creator = {"data": {"type": "users", "id": found.user_public_id}}
    data = {
        "type": "api_keys",
        "id": key_id,
        "attributes": {
            "created_at": now,
            "modified_at": now,
            "key": key,
            "last4": key[-4:],
            "name": name,
        },
        "relationships": {"created_by": creator, "modified_by": creator},
    }
    return answer(201, {"data": data}, NO_STORE)


def restore_key(ctx: Context, org_id: int) -> int:
    """Datadog's UI restores a revoked key within 7 days; 0 when none can be restored."""
    return ctx.store.restore_key(org_id, ctx.now() - KEY_RESTORE_WINDOW)
