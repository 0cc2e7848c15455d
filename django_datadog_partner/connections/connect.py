"""Finish the connect flow: consume the state, exchange the code, save, get the API key.

Views call ``connect()`` with the callback's parameters and ``reconnect()`` to start a new
flow for an existing connection; both raise ``ConnectFailed`` with a reason from
``failures`` for every way the flow can fail, after sending ``connection_failed``.
Identity is (owner, ``domain``, Datadog org id when known): connecting the same owner to
the same organisation again updates that connection in place.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from django.contrib.sessions.backends.base import SessionBase
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import failures, oauth
from ..conf import app_settings
from ..exceptions import (
    CertificateRefusedError,
    ConfigurationError,
    CredentialsUnreadableError,
    DatadogPartnerError,
    InvalidClientError,
    InvalidSiteError,
    InvalidStateError,
    OAuthError,
    RateLimitedError,
    RetryableError,
    TransportRefusedError,
)
from ..models import AuthorizationRequest, Connection, ConnectionStatus
from ..regions import Site, check_region_agreement, get_site, validate_domain, validate_site
from ..signals import connection_established, connection_failed
from .api_keys import MISSING_SCOPE, APIKeyOutcome, create_api_key
from .authorization import callback_url, consume_authorization, start_authorization, take_verifier
from .status import raise_alarm, set_status
from .tokens import INVALID_CLIENT_ALARM, forget_lost_answer

logger = logging.getLogger("django_datadog_partner")

#: ``ConnectOutcome.code`` values.
CONNECTED = "connected"  # a new connection
RECONNECTED = "reconnected"  # an existing connection updated in place
DIFFERENT_ORG = "different_org"  # a reconnect that Datadog answered for another organisation

#: Statuses a reconnect leaves at once: the tokens just obtained work.
UNUSABLE_STATUSES = (
    ConnectionStatus.NEEDS_RECONNECT,
    ConnectionStatus.REVOKING,
    ConnectionStatus.REVOKED,
    ConnectionStatus.CREDENTIALS_UNREADABLE,
)
ORG_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


@dataclass(frozen=True)
class ConnectOutcome:
    """A finished flow: ``code`` is ``connected``, ``reconnected`` or ``different_org``."""

    connection: Connection
    created: bool
    code: str
    api_key: APIKeyOutcome


class ConnectFailed(DatadogPartnerError):
    """The flow stopped; ``reason`` is a ``failures`` code, ``detail`` Datadog's own words."""

    def __init__(
        self,
        reason: str,
        message: str = "",
        *,
        detail: str = "",
        connection: Connection | None = None,
    ) -> None:
        self.reason = reason
        self.detail = detail[:300]
        self.connection = connection
        super().__init__(message or reason, error_code=reason)


def fail(
    reason: str,
    *,
    user: Any,
    message: str = "",
    detail: str = "",
    connection: Connection | None = None,
) -> ConnectFailed:
    """Log the failure, send ``connection_failed`` and return the exception to raise."""
    # %r: the message may quote hostile input; repr keeps CR/LF from forging log lines.
    logger.warning(
        "Datadog connect flow failed for user %s: %s %r",
        getattr(user, "pk", None),
        reason,
        message,
    )
    connection_failed.send(sender=Connection, reason=reason, user=user)
    return ConnectFailed(reason, message, detail=detail, connection=connection)


@sensitive_variables("code", "verifier", "tokens")
def connect(
    session: SessionBase,
    *,
    user: Any,
    state: str | None,
    code: str,
    callback_domain: str | None = None,
    dd_org_id: str = "",
    dd_org_name: str = "",
) -> ConnectOutcome:
    """Complete an authorisation from Datadog's callback and return what happened."""
    try:
        pending = consume_authorization(session, user=user, state=state)
    except InvalidStateError as exc:
        raise fail(exc.error_code, user=user, message=str(exc)) from None
    site = _token_site(pending, callback_domain, user)
    owner = pending.owner
    if owner is None:
        raise fail(failures.NO_OWNER, user=user, message="the owner no longer exists")
    try:
        verifier = take_verifier(pending)
    except CredentialsUnreadableError as exc:
        raise fail(failures.MISCONFIGURED, user=user, message=str(exc)) from None
    tokens = _exchange(site, code, verifier, user)
    _check_scopes(tokens, user)
    connection, created, outcome_code = _save(
        pending, site, tokens, user, _clean_org_id(dd_org_id), _clean_org_name(dd_org_name)
    )
    key = create_api_key(connection, access_token=tokens.access_token)
    if key.reason == MISSING_SCOPE:
        raise fail(
            failures.MISSING_API_KEYS_WRITE,
            user=user,
            message="the marketplace endpoint refused the OAuth token",
            connection=connection,
        )
    logger.info(
        "Datadog connection %s %s by user %s (API key %s).",
        connection.pk,
        outcome_code,
        getattr(user, "pk", None),
        key.result,
    )
    transaction.on_commit(
        lambda: connection_established.send(
            sender=Connection, connection=connection, created=created
        ),
        robust=True,
    )
    return ConnectOutcome(connection=connection, created=created, code=outcome_code, api_key=key)


def reconnect(connection: Connection, *, session: SessionBase, user: Any) -> str:
    """Start a fresh flow for ``connection`` with its stored region and site.

    Returns the Datadog authorize URL. The callback updates the same connection unless
    Datadog answers for another organisation (then ``ConnectOutcome.code`` says so).
    """
    owner = connection.owner
    if owner is None:
        raise fail(failures.NO_OWNER, user=user, message="the owner no longer exists")
    try:
        site = get_site(connection.domain)
        web_site = validate_site(connection.site)
        check_region_agreement(web_site, site)
    except InvalidSiteError as exc:
        raise fail(failures.INVALID_SITE, user=user, message=exc.reason) from None
    return start_authorization(
        session, user=user, owner=owner, site=site, web_site=web_site, reconnect_of=connection
    )


def _token_site(pending: AuthorizationRequest, callback_domain: str | None, user: Any) -> Site:
    """The callback's ``domain`` decides the token host; the onboarding one when absent."""
    try:
        site = validate_domain(callback_domain) if callback_domain else get_site(pending.domain)
    except InvalidSiteError as exc:
        raise fail(failures.INVALID_SITE, user=user, message=exc.reason) from None
    try:
        check_region_agreement(validate_site(pending.site), site)
    except InvalidSiteError as exc:
        raise fail(failures.REGION_MISMATCH, user=user, message=exc.reason) from None
    if site.domain != pending.domain:
        logger.info(
            "Datadog authorization %s started for %s finished on %s (site %s).",
            pending.pk,
            pending.domain,
            site.domain,
            pending.site,
        )
    return site


@sensitive_variables("code", "verifier")
def _exchange(site: Site, code: str, verifier: str, user: Any) -> oauth.TokenSet:
    try:
        return oauth.exchange_code(
            site, code=code, code_verifier=verifier, redirect_uri=callback_url()
        )
    except InvalidClientError as exc:
        raise_alarm(
            INVALID_CLIENT_ALARM,
            "Datadog refused this OAuth client's credentials during a code exchange. Check "
            "DATADOG_PARTNER['CLIENT_ID'] and ['CLIENT_SECRET'].",
        )
        raise fail(failures.INVALID_CLIENT, user=user, message=str(exc)) from None
    except CertificateRefusedError as exc:
        raise fail(failures.DATADOG_TLS, user=user, message=str(exc)) from None
    except TransportRefusedError as exc:
        raise fail(failures.DATADOG_REDIRECT, user=user, message=str(exc)) from None
    except ConfigurationError as exc:
        raise fail(failures.MISCONFIGURED, user=user, message=str(exc)) from None
    except (RetryableError, RateLimitedError) as exc:
        raise fail(failures.DATADOG_UNAVAILABLE, user=user, message=str(exc)) from None
    except OAuthError as exc:
        reason = token_error_reason(exc)
        raise fail(reason, user=user, message=str(exc), detail=exc.description) from None


def token_error_reason(exc: OAuthError) -> str:
    """Map Datadog's token-endpoint refusal to the page that explains it."""
    text = exc.description.lower()
    if exc.error_code == oauth.INVALID_TOKEN_RESPONSE:
        return failures.INVALID_TOKEN_RESPONSE
    if "client_id" in text:
        return failures.CLIENT_NOT_PUBLISHED
    if "redirect uri" in text or exc.error_code == "redirect_uri_mismatch":
        return failures.REDIRECT_URI_MISMATCH
    if exc.error_code == "invalid_grant":
        return failures.INVALID_GRANT
    if "code verifier" in text:
        return failures.INVALID_CODE_VERIFIER
    if exc.error_code == "invalid_scope":
        return failures.INVALID_SCOPE
    if exc.status_code == 403 or text == "forbidden":
        return failures.FORBIDDEN
    return failures.DATADOG_REFUSED


def _check_scopes(tokens: oauth.TokenSet, user: Any) -> None:
    """``REQUIRED_SCOPES`` must be granted; checked only when Datadog lists the scopes."""
    missing = [s for s in app_settings.REQUIRED_SCOPES if s not in tokens.scopes]
    if tokens.scopes and missing:
        raise fail(
            failures.MISSING_SCOPES,
            user=user,
            message="granted scopes lack " + " ".join(missing),
            detail=" ".join(missing),
        )


def _save(
    pending: AuthorizationRequest,
    site: Site,
    tokens: oauth.TokenSet,
    user: Any,
    org_id: str,
    org_name: str,
) -> tuple[Connection, bool, str]:
    """Create or update the connection for this identity; a concurrent insert is retried."""
    try:
        connection, created = _save_once(pending, site, tokens, user, org_id, org_name)
    except IntegrityError:  # another flow created this identity meanwhile: update that one
        connection, created = _save_once(pending, site, tokens, user, org_id, org_name)
    if pending.reconnect_of_id and connection.pk != pending.reconnect_of_id:
        outcome_code = DIFFERENT_ORG
    else:
        outcome_code = CONNECTED if created else RECONNECTED
    return connection, created, outcome_code


def _save_once(
    pending: AuthorizationRequest,
    site: Site,
    tokens: oauth.TokenSet,
    user: Any,
    org_id: str,
    org_name: str,
) -> tuple[Connection, bool]:
    with transaction.atomic():
        connection = _find_connection(pending, site.domain, org_id)
        created = connection is None
        if connection is None:
            connection = _new_connection(pending, site.domain, org_id)
        _apply(connection, pending, tokens, user, org_id, org_name)
        connection.save()
        if connection.status in UNUSABLE_STATUSES:
            # In the same transaction as the new tokens, so a pending revocation retry or
            # a health check never treats them as the old, broken ones.
            set_status(
                connection, ConnectionStatus.KEY_MISSING, "Reconnected; checking the API key."
            )
    return connection, created


def _find_connection(pending: AuthorizationRequest, domain: str, org_id: str) -> Connection | None:
    """The connection this answer belongs to; see README "Connection identity"."""
    candidates = Connection.objects.select_for_update().filter(
        owner_content_type_id=pending.owner_content_type_id,
        owner_object_id=pending.owner_object_id,
        domain=domain,
    )
    reconnecting = (
        candidates.filter(pk=pending.reconnect_of_id) if pending.reconnect_of_id else None
    )
    if org_id:
        exact = candidates.filter(dd_org_id=org_id).first()
        if exact is not None:
            return exact
        # The organisation was unknown when this connection was made: adopt it only when
        # the user explicitly reconnects it.
        return reconnecting.filter(dd_org_id="").first() if reconnecting is not None else None
    if reconnecting is not None:
        target = reconnecting.first()
        if target is not None:
            return target
    return candidates.filter(dd_org_id="").first()


def _new_connection(pending: AuthorizationRequest, domain: str, org_id: str) -> Connection:
    connection = Connection(
        owner_content_type_id=pending.owner_content_type_id,
        owner_object_id=pending.owner_object_id,
        domain=domain,
        dd_org_id=org_id,
        status=ConnectionStatus.KEY_MISSING,
        status_reason="The API key is being created.",
    )
    return connection


@sensitive_variables("tokens")
def _apply(
    connection: Connection,
    pending: AuthorizationRequest,
    tokens: oauth.TokenSet,
    user: Any,
    org_id: str,
    org_name: str,
) -> None:
    now = timezone.now()
    connection.connected_by = user
    connection.site = pending.site
    if org_id:
        connection.dd_org_id = org_id
    if org_name:
        connection.dd_org_name = org_name
    connection.access_token = tokens.access_token
    if tokens.refresh_token:
        connection.refresh_token = tokens.refresh_token
    forget_lost_answer(connection)
    connection.expires_at = tokens.expires_at
    if tokens.scopes:
        connection.scopes = tokens.scopes
    connection.last_success_at = now


def _clean_org_id(value: str) -> str:
    """``dd_oid`` from the callback (undocumented): kept only when it looks like an id."""
    value = (value or "").strip()
    return value if ORG_ID_PATTERN.match(value) else ""


def _clean_org_name(value: str) -> str:
    value = "".join(ch for ch in (value or "") if ch.isprintable()).strip()
    return value[:255]
