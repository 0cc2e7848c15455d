"""Finish the connect flow: consume the state, exchange the code, save, get the API key.

Views call ``connect()`` with the callback's parameters and ``reconnect()`` to start a new
flow for an existing connection; both raise ``ConnectFailed`` with a reason from
``failures`` for every way the flow can fail, after sending ``connection_failed`` (what a
flow ends with, ``ConnectOutcome`` or ``ConnectFailed``, is in ``results``).
Which connection the new tokens belong to is decided by ``identity`` from Datadog's own
answers, never from the callback's ``dd_oid``/``dd_org_name``.

Longer than 300 lines for one concern, the callback's steps in the order they run: the
state, the token site, the exchange, the scopes, the placement, the save (retried once on a
concurrent insert) and the key. Each step is a function here so the flow reads top to
bottom; what the flow ends with is already apart (``results``), as are the identity rules
(``identity``) and the key (``api_keys``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.sessions.backends.base import SessionBase
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import failures, oauth, permissions
from ..alarms import raise_alarm
from ..conf import app_settings
from ..exceptions import (
    CertificateRefusedError,
    ConfigurationError,
    CredentialsUnreadableError,
    InvalidClientError,
    InvalidSiteError,
    InvalidStateError,
    OAuthError,
    RateLimitedError,
    RetryableError,
    TransportRefusedError,
)
from ..models import AuthorizationRequest, Connection, ConnectionStatus
from ..regions import (
    Site,
    WebSite,
    check_region_agreement,
    get_site,
    validate_domain,
    validate_site,
    web_url_in_region,
)
from ..signals import connection_established
from ..status import set_status
from .api_keys import note_refusal, settle, store_key
from .authorization import callback_url, consume_authorization, start_authorization, take_verifier
from .identity import (
    MarketplaceAnswer,
    Placement,
    VerifiedOrg,
    ask_marketplace,
    place,
)
from .results import (
    CONNECTED,
    DIFFERENT_ORG,
    RECONNECTED,
    REFUSAL_FAILURES,
    UNDECIDED_FAILURES,
    ConnectOutcome,
    fail,
    token_error_reason,
)
from .tokens import INVALID_CLIENT_ALARM, forget_lost_answer

logger = logging.getLogger("django_datadog_partner")


@sensitive_variables()
def connect(
    session: SessionBase,
    *,
    user: Any,
    state: str | None,
    code: str,
    callback_domain: str | None = None,
    callback_site: str | None = None,
    org_hint: str = "",
) -> ConnectOutcome:
    """Complete an authorisation from Datadog's callback and return what happened.

    ``callback_site`` only chooses the web address stored (inside the token's region);
    ``org_hint`` (the callback's ``dd_oid``) is only compared with what Datadog confirms.
    """
    try:
        pending = consume_authorization(session, user=user, state=state)
    except InvalidStateError as exc:
        raise fail(exc.error_code, user=user, message=str(exc)) from None
    site = _token_site(pending, callback_domain, user)
    owner = pending.owner
    if owner is None:
        raise fail(failures.NO_OWNER, user=user, message="the owner no longer exists")
    _check_still_allowed(pending, owner, user)
    try:
        verifier = take_verifier(pending)
    except CredentialsUnreadableError as exc:
        raise fail(failures.MISCONFIGURED, user=user, message=str(exc)) from None
    tokens = _exchange(site, code, verifier, user)
    _check_scopes(tokens, user)
    answer = ask_marketplace(site, tokens.access_token, tokens.scopes)
    _compare_hint(org_hint, answer.org)
    placement = _placement(pending, site, answer, user)
    web_url = _web_url(pending, site, callback_site)
    connection, created, outcome_code = _save(
        pending, site, web_url, tokens, user, answer, placement
    )
    key = settle(connection, answer, keep_key=placement.keep_key)
    if key.reason in REFUSAL_FAILURES:
        raise fail(
            REFUSAL_FAILURES[key.reason],
            user=user,
            message=f"the marketplace endpoint refused the OAuth token ({key.reason})",
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


@sensitive_variables()
def _placement(
    pending: AuthorizationRequest, site: Site, answer: MarketplaceAnswer, user: Any
) -> Placement:
    """Where the tokens go (``identity.place``); when Datadog's answer cannot tell, the
    flow stops and no connection changes."""
    placement = place(pending, site.domain, answer)
    if placement is None:
        note_refusal(answer)
        raise fail(
            UNDECIDED_FAILURES.get(answer.missing, failures.DATADOG_REFUSED),
            user=user,
            message=f"no connection chosen on marketplace answer {answer.error_code}",
            detail=answer.detail,
        )
    return placement


def _check_still_allowed(pending: AuthorizationRequest, owner: Any, user: Any) -> None:
    """What let the flow start must still hold when Datadog sends the user back: the owner
    is among the user's (``OWNERS_FOR_USER``) and, for a reconnect, the user may still
    reconnect that connection (``permissions.RECONNECT``)."""
    reconnecting = pending.reconnect_of
    allowed = permissions.is_owner_member(user, pending) and (
        reconnecting is None or permissions.may(user, permissions.RECONNECT, reconnecting)
    )
    if not allowed:
        raise fail(
            failures.OWNER_NOT_ALLOWED,
            user=user,
            message=f"user may no longer connect owner {permissions.owner_choice_value(owner)}",
        )


def _web_url(pending: AuthorizationRequest, site: Site, callback_site: str | None) -> str:
    """The callback's ``site``, else the onboarding one, else the region's own web address:
    whichever first belongs to the region whose token host answered."""
    return web_url_in_region(site, _web_site(callback_site), _web_site(pending.site))


def _web_site(raw: str | None) -> WebSite | None:
    if not raw:
        return None
    try:
        return validate_site(raw)
    except InvalidSiteError as exc:
        logger.info("Datadog callback site ignored: %s", exc.reason)
        return None


def _compare_hint(org_hint: str, org: VerifiedOrg | None) -> None:
    """Log a callback ``dd_oid`` that contradicts Datadog (a forged callback, or a mix-up)."""
    if org is not None and org_hint and org_hint != org.id:
        logger.warning(
            "Datadog callback named organisation %r, Datadog confirmed %s: the callback's "
            "value was ignored.",
            org_hint[:100],
            org.id,
        )


@sensitive_variables()
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


def _check_scopes(tokens: oauth.TokenSet, user: Any) -> None:
    """``REQUIRED_SCOPES`` must be granted; checked only when Datadog lists the scopes."""
    missing = [s for s in app_settings.REQUIRED_SCOPES if s not in tokens.scopes]
    if tokens.scopes and missing:
        raise fail(
            failures.MISSING_SCOPES,
            user=user,
            message="granted scopes lack " + " ".join(missing),
            note="Missing: " + ", ".join(missing) + ".",
        )


def _save(
    pending: AuthorizationRequest,
    site: Site,
    web_url: str,
    tokens: oauth.TokenSet,
    user: Any,
    answer: MarketplaceAnswer,
    placement: Placement,
) -> tuple[Connection, bool, str]:
    """Create or update the connection ``placement`` names; a concurrent insert re-places."""
    try:
        connection, created = _save_once(pending, site, web_url, tokens, user, answer, placement)
    except IntegrityError:  # another flow saved this organisation meanwhile
        placement = place(pending, site.domain, answer) or placement
        connection, created = _save_once(pending, site, web_url, tokens, user, answer, placement)
    if pending.reconnect_of_id and connection.pk != pending.reconnect_of_id:
        outcome_code = DIFFERENT_ORG
    else:
        outcome_code = CONNECTED if created else RECONNECTED
    return connection, created, outcome_code


@sensitive_variables()
def _save_once(
    pending: AuthorizationRequest,
    site: Site,
    web_url: str,
    tokens: oauth.TokenSet,
    user: Any,
    answer: MarketplaceAnswer,
    placement: Placement,
) -> tuple[Connection, bool]:
    with transaction.atomic():
        connection = None
        if placement.target_id is not None:
            connection = (
                Connection.objects.select_for_update().filter(pk=placement.target_id).first()
            )
        created = connection is None
        if connection is None:
            connection = _new_connection(pending, site.domain)
        _apply(connection, web_url, tokens, user)
        connection.save()
        if answer.created:
            store_key(connection, answer)
        if connection.status in ConnectionStatus.unusable():
            # In the same transaction as the new tokens, so a pending revocation retry or
            # a health check never treats them as the old, broken ones.
            set_status(
                connection, ConnectionStatus.KEY_MISSING, "Reconnected; checking the API key."
            )
    return connection, created


def _new_connection(pending: AuthorizationRequest, domain: str) -> Connection:
    return Connection(
        owner_content_type_id=pending.owner_content_type_id,
        owner_object_id=pending.owner_object_id,
        domain=domain,
        status=ConnectionStatus.KEY_MISSING,
        status_reason="The API key is being created.",
    )


@sensitive_variables()
def _apply(connection: Connection, web_url: str, tokens: oauth.TokenSet, user: Any) -> None:
    connection.connected_by = user
    connection.site = web_url
    connection.access_token = tokens.access_token
    if tokens.refresh_token:
        connection.refresh_token = tokens.refresh_token
    forget_lost_answer(connection)
    connection.expires_at = tokens.expires_at
    if tokens.scopes:
        connection.scopes = tokens.scopes
    connection.last_success_at = timezone.now()
