"""Pending authorisations: created on the user's confirmation, consumed exactly once.

A row holds a 256-bit ``state``, the encrypted PKCE verifier, the user, the owner and the
SHA-256 of a random *binding* value kept in the user's session (not the session key,
which changes at login under some backends). The callback consumes the row with one
conditional UPDATE that also requires this session's binding, so a replay, a concurrent
duplicate or another browser finds nothing to consume; it then checks that the same user
is back. A state is only ever spent by the browser it was issued to: a stranger who learnt
it (``?error=access_denied&state=…``, a forged code) cannot cancel someone else's flow.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from django.contrib.sessions.backends.base import SessionBase
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import oauth
from ..conf import app_settings
from ..exceptions import InvalidStateError
from ..failures import (
    STATE_EXPIRED,
    STATE_MISSING,
    STATE_OTHER_BROWSER,
    STATE_OTHER_USER,
    STATE_UNKNOWN,
    STATE_USED,
)
from ..models import AuthorizationRequest, Connection
from ..regions import Site, WebSite

logger = logging.getLogger("django_datadog_partner")

#: Session key of the random value that binds pending authorisations to this browser.
BINDING_SESSION_KEY = "datadog_partner_binding"
STATE_BYTES = 32  # 256 bits
STATE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


def callback_url() -> str:
    """The redirect URI: ``BASE_URL`` + the callback route (never the Host header)."""
    return app_settings.BASE_URL + reverse("datadog_partner:callback")


@sensitive_variables()
def start_authorization(
    session: SessionBase,
    *,
    user: Any,
    owner: models.Model,
    site: Site,
    web_site: WebSite,
    reconnect_of: Connection | None = None,
) -> str:
    """Record a pending authorisation and return the Datadog URL to send the browser to.

    ``site`` and ``web_site`` must come from ``regions`` validation. At most
    ``MAX_PER_SESSION`` authorisations stay outstanding per browser; the oldest go first.
    """
    binding = _binding(session)
    binding_hash = _hash(binding)
    verifier, challenge = oauth.new_pkce_pair()
    state = secrets.token_urlsafe(STATE_BYTES)
    now = timezone.now()
    with transaction.atomic():
        _evict_oldest(binding_hash, now, keep=AuthorizationRequest.MAX_PER_SESSION - 1)
        pending = AuthorizationRequest(
            state=state,
            user=user,
            binding_hash=binding_hash,
            domain=site.domain,
            site=web_site.url,
            reconnect_of=reconnect_of,
            created_at=now,
            expires_at=now + timedelta(seconds=AuthorizationRequest.LIFETIME_SECONDS),
        )
        pending.code_verifier = verifier
        pending.set_owner(owner)
        pending.save()
    logger.info(
        "Datadog authorization %s started by user %s for %s (%s).",
        pending.pk,
        user.pk,
        site.domain,
        web_site.host,
    )
    return oauth.authorization_url(
        web_site.url, state=state, code_challenge=challenge, redirect_uri=callback_url()
    )


def consume_authorization(
    session: SessionBase, *, user: Any, state: str | None
) -> AuthorizationRequest:
    """Mark the authorisation for ``state`` used and return it, or raise ``InvalidStateError``.

    Only this browser (the session holding the binding) can consume the row, and only one
    caller can ever win the conditional UPDATE. Once consumed, a failed user check still
    burns it: the browser that owns the flow came back with the wrong account.
    """
    if not state:
        raise InvalidStateError("The callback has no state.", error_code=STATE_MISSING)
    if not STATE_PATTERN.match(state):
        raise InvalidStateError("The callback's state is malformed.", error_code=STATE_UNKNOWN)
    now = timezone.now()
    won = _consume_own(session, state, now)
    pending = AuthorizationRequest.objects.filter(state=state).first()
    if not won:
        raise _why_not_consumed(pending, session, user, now)
    assert pending is not None
    if not _same_user(pending, user):
        raise _other_user()
    return pending


def burn_state(session: SessionBase, state: str | None) -> bool:
    """Consume ``state`` if this browser owns it (callbacks that cannot succeed); True if it
    was live. A state issued to another browser is left for its owner."""
    if not state or not STATE_PATTERN.match(state):
        return False
    return _consume_own(session, state, timezone.now())


@sensitive_variables()
def take_verifier(pending: AuthorizationRequest) -> str:
    """The PKCE verifier of a consumed authorisation; the stored copy is wiped at once."""
    assert pending.code_verifier is not None
    verifier = pending.code_verifier.reveal()
    AuthorizationRequest.objects.filter(pk=pending.pk).update(code_verifier=None)
    pending.code_verifier = None
    return verifier


def purge_expired_authorization_requests() -> int:
    """Delete expired authorisations (used or not); returns how many rows went."""
    deleted, _per_model = AuthorizationRequest.objects.filter(
        expires_at__lte=timezone.now()
    ).delete()
    return deleted


def _binding(session: SessionBase) -> str:
    binding = session.get(BINDING_SESSION_KEY)
    if not isinstance(binding, str) or len(binding) < 32:
        binding = secrets.token_urlsafe(32)
        session[BINDING_SESSION_KEY] = binding
    return binding


def _hash(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


def _evict_oldest(binding_hash: str, now: Any, *, keep: int) -> None:
    outstanding = AuthorizationRequest.objects.filter(
        binding_hash=binding_hash, used_at__isnull=True, expires_at__gt=now
    ).order_by("-created_at", "-pk")
    stale = list(outstanding.values_list("pk", flat=True)[keep:])
    if stale:
        AuthorizationRequest.objects.filter(pk__in=stale).delete()


def _consume_own(session: SessionBase, state: str, now: Any) -> bool:
    """The one conditional UPDATE: live, and bound to the binding this session holds."""
    binding_hash = _session_binding_hash(session)
    if binding_hash is None:
        return False
    return bool(
        AuthorizationRequest.objects.filter(
            state=state, binding_hash=binding_hash, used_at__isnull=True, expires_at__gt=now
        ).update(used_at=now)
    )


def _session_binding_hash(session: SessionBase) -> str | None:
    binding = session.get(BINDING_SESSION_KEY)
    return _hash(binding) if isinstance(binding, str) else None


def _same_user(pending: AuthorizationRequest, user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and pending.user_id == user.pk


def _other_user() -> InvalidStateError:
    return InvalidStateError(
        "The callback's state belongs to another user.", error_code=STATE_OTHER_USER
    )


def _why_not_consumed(
    pending: AuthorizationRequest | None, session: SessionBase, user: Any, now: Any
) -> InvalidStateError:
    if pending is None:
        return InvalidStateError("The callback's state is unknown.", error_code=STATE_UNKNOWN)
    if not _same_user(pending, user):
        return _other_user()
    if not hmac.compare_digest(_session_binding_hash(session) or "", pending.binding_hash):
        return InvalidStateError(
            "The callback's state was issued to another browser.", error_code=STATE_OTHER_BROWSER
        )
    if pending.used_at is not None:
        return InvalidStateError("The callback's state was already used.", error_code=STATE_USED)
    return InvalidStateError("The callback's state has expired.", error_code=STATE_EXPIRED)
