"""Driving the fake Datadog from Python: orgs, keys, grants, faults, and what arrived.

``Sandbox()`` works on the sandbox app's tables (the running sandbox server);
``django_datadog_partner.testing.FakeDatadog`` is the same class on a ``MemoryStore``.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.utils import timezone

from . import SANDBOX_DOMAIN, oauth_server
from .engine import default_store
from .protocol import Context
from .state import Code, Faults, Org, Store, User, digest


@dataclasses.dataclass(frozen=True)
class IssuedGrant:
    """Tokens of a grant made without the browser dance (for factories)."""

    grant_id: int
    access_token: str
    refresh_token: str
    expires_in: int
    scopes: list[str]


class Sandbox:
    """One fake Datadog. ``domain`` is what its OAuth callbacks report."""

    def __init__(self, store: Store | None = None, domain: str = SANDBOX_DOMAIN) -> None:
        self.store = store or default_store()
        self.domain = domain

    def context(self) -> Context:
        return Context(store=self.store, domain=self.domain)

    # --- orgs, users, keys, grants ------------------------------------------------------

    def create_org(self, name: str = "Acme", *, domain: str = "") -> Org:
        return self.store.create_org(name, domain)

    def create_user(self, org: Org, name: str = "Datadog User", email: str = "") -> User:
        return self.store.create_user(org.id, name, email)

    def create_api_key(self, org: Org, user: User | None = None) -> str:
        """A new marketplace key for ``org`` (plaintext, shown once); fails if one is active."""
        key = secrets.token_hex(16)
        key_id = str(uuid.uuid4())
        name = f"OAuth Client API Key {key_id[:8]}"
        created = self.store.add_key_unless_active(
            org.id, user.id if user else None, key_id, digest(key), key[-4:], name
        )
        if not created:
            raise ValueError(f"{org.name} already has an active API key; revoke it first.")
        return key

    def revoke_api_key(self, org: Org) -> int:
        """Revoke the org's key: intake and ``/api/v1/validate`` answer 403 from now on."""
        return self.store.revoke_keys(org.id)

    def restore_api_key(self, org: Org) -> int:
        """Restore the org's key revoked less than 7 days ago, as Datadog's UI allows."""
        return oauth_server.restore_key(self.context(), org.id)

    def grant(
        self, org: Org, user: User | None = None, scopes: list[str] | None = None
    ) -> IssuedGrant:
        """A consented grant with fresh tokens, as if the user had clicked Authorize."""
        user = user or self.create_user(org)
        scopes = scopes or list(oauth_server.DEFAULT_SCOPES)
        code = Code(
            code_hash=digest(secrets.token_urlsafe(32)),
            org_id=org.id,
            user_id=user.id,
            redirect_uri="",
            code_challenge="",
            scopes=scopes,
            expires_at=timezone.now(),
        )
        self.store.add_code(code)
        self.store.take_code(code.code_hash)
        grant_id = self.store.add_grant(code)
        body = oauth_server.issue_tokens(self.context(), grant_id, scopes).json()
        return IssuedGrant(
            grant_id, body["access_token"], body["refresh_token"], body["expires_in"], scopes
        )

    def revoke_grant(self, grant_id: int) -> None:
        """The user revoked this authorization: its next refresh fails with invalid_grant."""
        self.store.revoke_grant(grant_id)

    def uninstall(self, org: Org) -> int:
        """The integration was uninstalled from ``org``: every grant is revoked."""
        return self.store.revoke_org_grants(org.id)

    # --- faults -------------------------------------------------------------------------

    def faults(self, org: Org) -> Faults:
        return self.store.faults(org.id)

    def set_faults(self, org: Org, **changes: Any) -> Faults:
        """Change some faults, e.g. ``set_faults(org, intake="429", times=2)``.

        Fields: ``intake`` ("429", "500", "503", "403" or ""), ``times`` (None: always),
        ``rate_limit_reset`` (seconds), ``slow_seconds``, ``refresh_invalid_grant``,
        ``key_creation`` ("409", "403" or ""), ``restorable_key_conflict`` (409 while a
        revoked key can be restored), ``bare_callback`` (the callback carries only
        ``code``, ``state`` and ``domain``), ``revoke_needs_bearer`` (revoke answers 401
        without a usable ``Authorization: Bearer`` access token), ``rotate_refresh_tokens``
        (False: a refresh answers the same refresh token), ``series_errors`` (every series
        202 lists an error), ``check_host_required`` (a service check without
        ``host_name`` is a 400).
        """
        faults = dataclasses.replace(self.store.faults(org.id), **changes)
        self.store.set_faults(org.id, faults)
        return faults

    def clear_faults(self, org: Org) -> None:
        """Every fault off; the switches for undocumented behaviour stay as they are."""
        kept = self.store.faults(org.id)
        self.store.set_faults(
            org.id,
            Faults(
                bare_callback=kept.bare_callback,
                rotate_refresh_tokens=kept.rotate_refresh_tokens,
                series_errors=kept.series_errors,
                check_host_required=kept.check_host_required,
            ),
        )

    # --- the browser side of OAuth, without a browser ------------------------------------

    def authorize(self, authorize_url: str, user: User, *, approve: bool = True) -> str:
        """The callback URL Datadog would redirect ``user``'s browser to after consent.

        Raises ``oauth_server.AuthorizeError`` where Datadog shows its own error page.
        """
        query = dict(parse_qsl(urlsplit(authorize_url).query))
        request, problem = oauth_server.parse_authorize(query)
        if problem is not None:
            params = {"error": problem.code, "error_description": problem.description}
            return oauth_server.callback_url(request, params)
        if not approve:
            params = {"error": "access_denied", "error_description": "The user denied access"}
            return oauth_server.callback_url(request, params)
        context = self.context()
        org = self.store.get_org(user.org_id)
        code = oauth_server.issue_code(context, request, org.id, user.id)
        return oauth_server.callback_url(request, oauth_server.success_params(context, code, org))

    # --- what arrived -------------------------------------------------------------------

    def org_id(self, org: Any) -> int | None:
        """The store id of ``org`` (None: every org)."""
        return org.id if isinstance(org, Org) else None

    def events(self, org: Any = None) -> list[dict[str, Any]]:
        """Accepted events of ``org`` (every org when None), oldest first."""
        return [item.payload for item in self.store.received(self.org_id(org), "event")]

    def series(self, org: Any = None) -> list[dict[str, Any]]:
        """Accepted metric series, flattened across requests."""
        received = self.store.received(self.org_id(org), "series")
        return [series for item in received for series in item.payload["series"]]

    def logs(self, org: Any = None) -> list[dict[str, Any]]:
        """Accepted log entries, flattened across requests."""
        received = self.store.received(self.org_id(org), "logs")
        return [entry for item in received for entry in item.payload]

    def service_checks(self, org: Any = None) -> list[dict[str, Any]]:
        """Accepted service checks, flattened across requests."""
        received = self.store.received(self.org_id(org), "checks")
        return [check for item in received for check in item.payload]
