"""Access-token refresh: on demand, one at a time per connection, never losing a refresh token.

Rules (docs/explanation/lifecycle.rst, "Token refresh"):

* Single flight per connection (``rows.single_flight``: a PostgreSQL advisory lock, not a
  row lock); expiry is re-checked under a short row lock once it is held, so of many
  workers holding one expired connection exactly one calls Datadog and the others use the
  token it stored. No row lock or transaction is held while Datadog answers: the row is
  locked to read it, released, and locked again to store the answer only if it still
  holds the refresh token that was sent (a revocation or reconnect meanwhile wins).
* The new refresh token is committed before the new access token is handed out, and an
  answer without ``refresh_token`` keeps the stored one (RFC 6749 §6).
* ``invalid_grant``: the row is re-read. A changed refresh token means another worker won
  a race (its token is used); an unchanged one means the customer revoked the grant or
  uninstalled: ``needs_reconnect`` and no further token calls.
* Unless the answer to an earlier refresh was lost (sent, but no whole answer came back):
  Datadog may have replaced the refresh token then, so ``invalid_grant`` proves nothing.
  The connection keeps its status, and so its delivery (intake uses the API key); its
  status reason and an alarm say that API access needs a reconnect. New tokens clear it.
* ``invalid_client`` is our own configuration (e.g. a rotated client secret not deployed
  yet): a configuration alarm, and every connection is left untouched.
* Timeouts, 5xx and 429 never change a connection's status.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime, timedelta

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import oauth
from ..alarms import raise_alarm
from ..exceptions import (
    AnswerLostError,
    CredentialsUnreadableError,
    DatadogPartnerError,
    InvalidClientError,
    NeedsReconnectError,
    OAuthError,
    RateLimitedError,
    RefreshTokenLostError,
    RetryableError,
    TransportRefusedError,
)
from ..fields import Secret
from ..models import Alarm, Connection, ConnectionStatus
from ..regions import get_site
from ..status import mark_broken, reveal, set_status
from .rows import copy_state, error_code_of, locked_row, record_error, reread, single_flight
from .rows import unusable_error as _unusable_error

logger = logging.getLogger("django_datadog_partner")

#: Refresh this long before the access token expires (Datadog's own CLI uses 300 s).
REFRESH_LEEWAY = timedelta(minutes=5)

#: Alarm code raised when Datadog refuses our client credentials.
INVALID_CLIENT_ALARM = "invalid_client"

#: ``last_error_code`` once Datadog refuses a refresh token whose refresh answer was lost.
REFRESH_TOKEN_LOST = "refresh_token_lost"
REFRESH_TOKEN_LOST_REASON = (
    "Datadog refused the refresh token after the answer to an earlier refresh was lost, so "
    "Datadog had probably replaced it. Delivery with the API key is not affected, but "
    "Datadog's API cannot be called for this connection: Reconnect to restore it."
)


def lost_answer_alarm(connection: Connection) -> str:
    """The alarm code of one connection whose refresh token went with a lost answer."""
    return f"{REFRESH_TOKEN_LOST}_{connection.pk}"


def forget_lost_answer(connection: Connection) -> None:
    """New tokens are being stored: a lost refresh answer no longer matters.

    Clears the mark on the instance (the caller saves it) and the connection's alarm.
    """
    connection.refresh_answer_lost_at = None
    if connection.pk is not None:
        Alarm.objects.filter(code=lost_answer_alarm(connection), cleared_at__isnull=True).update(
            cleared_at=timezone.now()
        )


def token_is_fresh(connection: Connection, now: datetime | None = None) -> bool:
    """True when the stored access token stays valid for longer than the leeway."""
    if connection.access_token is None or connection.expires_at is None:
        return False
    return connection.expires_at > (now or timezone.now()) + REFRESH_LEEWAY


def access_token(connection: Connection) -> str:
    """A usable access token for ``Authorization: Bearer``, refreshed first if needed."""
    if not connection.holds_tokens:
        raise _unusable_error(connection)
    if not token_is_fresh(connection):
        refresh(connection)
    assert connection.access_token is not None
    return reveal(connection, connection.access_token)


def refresh(connection: Connection, *, force: bool = False) -> bool:
    """Refresh the connection's tokens; True if ``connection`` now holds a new access token.

    Without ``force`` nothing happens while the token is fresh. With ``force`` (admin
    "Refresh now", health checks) the token is refreshed unless another worker replaced it
    since ``connection`` was read. ``connection`` is updated in place either way.
    Raises ``NeedsReconnectError``, ``CredentialsUnreadableError``, ``InvalidClientError``
    (a ``ConfigurationError``), ``RetryableError``/``RateLimitedError`` or ``OAuthError``.
    """
    seen_access_token = connection.access_token
    failure: DatadogPartnerError | None = None
    with single_flight(connection):
        with locked_row(connection) as row:  # read and decide; released before the call
            due = row.holds_tokens and _needs_refresh(row, seen_access_token, force)
            if not row.holds_tokens:
                failure = _unusable_error(row)
        if due:
            failure = _refresh_locked(row)
    copy_state(row, connection)
    if isinstance(failure, InvalidClientError):
        raise_alarm(
            INVALID_CLIENT_ALARM,
            "Datadog refused this OAuth client's credentials while refreshing a token. "
            "Check DATADOG_PARTNER['CLIENT_ID'] and ['CLIENT_SECRET'] (after regenerating "
            "the secret in Datadog's Developer Platform, deploy it and restart web and "
            "worker processes). No connection was changed.",
        )
    if isinstance(failure, RefreshTokenLostError):
        raise_alarm(
            lost_answer_alarm(connection),
            f"Datadog connection {connection.pk} ({connection}): the answer to a token "
            "refresh was lost and Datadog now refuses the refresh token, which it had "
            "probably replaced. Delivery with its API key is not affected; calls to "
            "Datadog's API for it fail until its owner presses Reconnect.",
        )
    if failure is not None:
        raise failure
    return connection.access_token != seen_access_token


def _needs_refresh(row: Connection, seen_access_token: Secret | None, force: bool) -> bool:
    if force:
        # Single flight for forced refreshes too: skip if someone replaced the token already.
        return row.access_token == seen_access_token
    return not token_is_fresh(row)


@sensitive_variables()
def _refresh_locked(row: Connection) -> DatadogPartnerError | None:
    """Call the token endpoint under the refresh lock (``single_flight``, no row lock); store
    tokens or return the failure."""
    if row.refresh_token is None:
        mark_broken(
            row,
            ConnectionStatus.NEEDS_RECONNECT,
            "No refresh token is stored for this connection.",
            "no_refresh_token",
        )
        return _unusable_error(row)
    try:
        sent = reveal(row, row.refresh_token)
    except CredentialsUnreadableError as exc:
        return exc
    try:
        tokens = oauth.refresh_tokens(get_site(row.domain), sent)
    except InvalidClientError as exc:  # ours to fix: nobody's grant is dead, touch nothing
        return exc
    except OAuthError as exc:
        if exc.error_code != "invalid_grant":
            record_refresh_failure(row, exc)
            return exc
        try:
            return _after_invalid_grant(row, sent)
        except CredentialsUnreadableError as unreadable:
            return unreadable
    except (RetryableError, RateLimitedError, TransportRefusedError) as exc:
        record_refresh_failure(row, exc)
        return exc
    return _store_if_unchanged(row, sent, tokens)


@sensitive_variables()
def _store_if_unchanged(
    row: Connection, sent: str, tokens: oauth.TokenSet
) -> DatadogPartnerError | None:
    """Store the answer under a short row lock, if the row still holds the refresh token
    that was sent: a revocation or reconnect during the call wins, and its state is used."""
    with locked_row(row) as current:
        stored = current.refresh_token
        unchanged = stored is not None and hmac.compare_digest(reveal(current, stored), sent)
        if unchanged and current.holds_tokens:
            copy_state(current, row)
            store_tokens(row, tokens)
            return None
    logger.info("Datadog connection %s changed during a token refresh; its state is kept.", row.pk)
    copy_state(current, row)
    return None if current.holds_tokens else _unusable_error(current)


def record_refresh_failure(row: Connection, exc: DatadogPartnerError) -> None:
    """Note the error; if Datadog may have acted on the refresh, mark its answer lost."""
    record_error(row, error_code_of(exc))
    lost = isinstance(exc, AnswerLostError) or exc.error_code == oauth.INVALID_TOKEN_RESPONSE
    if lost and row.refresh_answer_lost_at is None:
        row.refresh_answer_lost_at = timezone.now()
        Connection.objects.filter(pk=row.pk).update(
            refresh_answer_lost_at=row.refresh_answer_lost_at
        )
        logger.warning(
            "Datadog connection %s: a refresh answer was lost; Datadog may have replaced "
            "the refresh token.",
            row.pk,
        )


@sensitive_variables()
def _after_invalid_grant(row: Connection, sent: str) -> DatadogPartnerError | None:
    """A race (another worker rotated the token) or a revoked grant (nothing changed)."""
    current = reread(row)
    current_token = current.refresh_token
    if current_token is not None and not hmac.compare_digest(reveal(current, current_token), sent):
        logger.info("Datadog connection %s: another worker refreshed first.", row.pk)
        copy_state(current, row)
        return None if current.holds_tokens else _unusable_error(current)
    if not current.holds_tokens:  # revoked or reconnected meanwhile
        copy_state(current, row)
        return _unusable_error(current)
    if current.refresh_answer_lost_at is not None:
        return _refresh_token_lost(row)
    mark_broken(
        row,
        ConnectionStatus.NEEDS_RECONNECT,
        "Datadog refused the refresh token: the integration was uninstalled or its "
        "authorization revoked in Datadog. Reconnect to restore it.",
        "invalid_grant",
    )
    return NeedsReconnectError(
        f"Datadog connection {row.pk} needs to be reconnected: Datadog refused its refresh "
        "token (invalid_grant).",
        error_code="invalid_grant",
    )


def _refresh_token_lost(row: Connection) -> RefreshTokenLostError:
    """Not an uninstall we can prove: keep the status (and delivery), say what is wrong."""
    record_error(row, REFRESH_TOKEN_LOST)
    set_status(row, row.status, REFRESH_TOKEN_LOST_REASON)
    return RefreshTokenLostError(
        f"Datadog connection {row.pk} must be reconnected for API access: Datadog refused its "
        "refresh token after an earlier refresh answer was lost (delivery is not affected).",
        error_code=REFRESH_TOKEN_LOST,
    )


def store_tokens(row: Connection, tokens: oauth.TokenSet) -> None:
    """Persist a token answer (the row is locked); the token endpoint accepted our client."""
    now = timezone.now()
    forget_lost_answer(row)
    if row.status_reason == REFRESH_TOKEN_LOST_REASON:
        set_status(row, row.status, "Datadog accepts the refresh token again.")
    row.access_token = tokens.access_token
    if tokens.refresh_token:  # Datadog may rotate it; without one the old one stays valid.
        row.refresh_token = tokens.refresh_token
    row.expires_at = tokens.expires_at
    if tokens.scopes:
        row.scopes = tokens.scopes
    row.last_success_at = now
    row.save(
        update_fields=[
            "access_token",
            "refresh_token",
            "expires_at",
            "refresh_answer_lost_at",
            "scopes",
            "last_success_at",
            "updated_at",
        ]
    )
    # The token endpoint accepted our credentials: any invalid_client alarm is over.
    Alarm.objects.filter(code=INVALID_CLIENT_ALARM, cleared_at__isnull=True).update(cleared_at=now)
