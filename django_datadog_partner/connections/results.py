"""What a connect flow ends with: a ``ConnectOutcome`` (its ``code`` says connected,
reconnected or a different organisation) or a ``ConnectFailed`` carrying a ``failures``
reason, raised through ``fail()``, which logs it and sends ``connection_failed``; and
which reason each of Datadog's refusals gets."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .. import failures, oauth
from ..exceptions import DatadogPartnerError, OAuthError
from ..models import Connection
from ..signals import connection_failed
from .api_keys import APIKeyOutcome
from .identity import MISSING_PERMISSION, MISSING_SCOPE, MISSING_UNCONFIRMED

logger = logging.getLogger("django_datadog_partner")

#: ``ConnectOutcome.code`` values.
CONNECTED = "connected"  # a new connection
RECONNECTED = "reconnected"  # an existing connection updated in place
DIFFERENT_ORG = "different_org"  # a reconnect that Datadog answered for another organisation

#: The failure page for a marketplace 401/403: the OAuth client's, or the user's.
REFUSAL_FAILURES = {
    MISSING_SCOPE: failures.MISSING_API_KEYS_WRITE,
    MISSING_PERMISSION: failures.USER_CANNOT_CREATE_KEYS,
}
#: The failure page for a marketplace answer that cannot tell which connection is meant.
UNDECIDED_FAILURES = {MISSING_UNCONFIRMED: failures.DATADOG_UNAVAILABLE, **REFUSAL_FAILURES}


@dataclass(frozen=True)
class ConnectOutcome:
    """A finished flow: ``code`` is ``connected``, ``reconnected`` or ``different_org``."""

    connection: Connection
    created: bool
    code: str
    api_key: APIKeyOutcome


class ConnectFailed(DatadogPartnerError):
    """The flow stopped; ``reason`` is a ``failures`` code, ``detail`` Datadog's own words
    (the page quotes them as Datadog's) and ``note`` ours, for the user."""

    def __init__(
        self,
        reason: str,
        message: str = "",
        *,
        detail: str = "",
        note: str = "",
        connection: Connection | None = None,
    ) -> None:
        self.reason = reason
        self.detail = detail[:300]
        self.note = note[:300]
        self.connection = connection
        super().__init__(message or reason, error_code=reason)


def fail(
    reason: str,
    *,
    user: Any,
    message: str = "",
    detail: str = "",
    note: str = "",
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
    return ConnectFailed(reason, message, detail=detail, note=note, connection=connection)


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
