"""Disconnect: revoke the tokens at Datadog, then forget them.

The connection goes to ``revoking`` first. The refresh token and then the access token are
revoked at ``https://api.<domain>/oauth2/v1/revoke`` (RFC 7009: Datadog answers 200 for
unknown tokens too, so revoking twice is harmless), with the client credentials in the
body and, as Datadog's example, ``Authorization: Bearer`` with the access token while it
is valid. A refusal is our client's fault only when the token endpoint refuses it too
(``_revoke_confirmed``). Only after Datadog confirmed are the
secrets wiped, the connection's pending events cancelled and the status set to
``revoked``. A timeout or 5xx leaves the connection ``revoking`` with its secrets still
encrypted, and the scheduled retry finishes the job. Datadog offers no API to delete the
marketplace API key, so the outcome tells the customer how to revoke it themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import oauth, outbox
from ..alarms import raise_alarm
from ..exceptions import (
    ConfigurationError,
    CredentialsUnreadableError,
    DatadogPartnerError,
    InvalidClientError,
    OAuthError,
    RateLimitedError,
    RetryableError,
)
from ..models import Connection, ConnectionStatus
from ..regions import Site, get_site
from ..status import set_status
from .api_keys import api_keys_page_url, key_ending
from .rows import copy_state, error_code_of, locked_row, record_error, reread
from .tokens import INVALID_CLIENT_ALARM, record_refresh_failure, store_tokens

logger = logging.getLogger("django_datadog_partner")

#: Revoked in this order: the grant first (RFC 7009 §2.1), then the access token.
TOKEN_FIELDS = (("refresh_token", "refresh_token"), ("access_token", "access_token"))


LOCAL_ONLY_NOTE = "Secrets deleted without Datadog's confirmation (operator override)."
LOCAL_ONLY_INSTRUCTION = (
    "The stored credentials were deleted, but Datadog did not confirm the revocation: the "
    "grant may still be valid there. In Datadog, an org admin should open Organization "
    "Settings → OAuth Apps and revoke this integration, and revoke the “OAuth Client API "
    "Key” on the API Keys page."
)


@dataclass(frozen=True)
class RevokeOutcome:
    """``status`` is ``revoked`` (done) or ``revoking`` (retried in the background)."""

    status: str
    message: str

    @property
    def done(self) -> bool:
        return self.status == ConnectionStatus.REVOKED


def revoke(
    connection: Connection, *, reason: str = "", actor: Any = None, local_only: bool = False
) -> RevokeOutcome:
    """Disconnect ``connection`` from Datadog; safe to call again at any time.

    ``actor`` (the user who asked, if any) is logged, not written into the status reason:
    the reason is shown to the customer, who need not learn vendor staff's user names.
    ``local_only`` is the operator's override for a revocation Datadog can never confirm
    (e.g. its tokens cannot be decrypted any more): the secrets are deleted without asking
    Datadog, which is logged as a warning and recorded in the status reason.
    """
    copy_state(reread(connection), connection)  # the caller's copy may be stale
    if connection.status == ConnectionStatus.REVOKED:
        return RevokeOutcome(connection.status, api_key_instruction(connection, already=True))
    reason = reason or "Disconnect requested."
    if actor is not None and hasattr(actor, "get_username"):
        logger.info("Datadog connection %s: disconnect asked by %s.", connection.pk,
                    actor.get_username())  # fmt: skip
    if local_only:
        reason += " " + LOCAL_ONLY_NOTE
        logger.warning("Datadog connection %s forgotten locally: %s", connection.pk, reason)
    set_status(connection, ConnectionStatus.REVOKING, reason)
    failure: DatadogPartnerError | None = None
    with locked_row(connection) as row:
        if row.status != ConnectionStatus.REVOKED:
            failure = None if local_only else _revoke_tokens(row)
            if failure is None:
                _finish(row, reason)
    copy_state(row, connection)
    if isinstance(failure, InvalidClientError):
        raise_alarm(
            INVALID_CLIENT_ALARM,
            "Datadog refused this OAuth client's credentials while revoking a token (its "
            "token endpoint too). Check DATADOG_PARTNER['CLIENT_ID'] and ['CLIENT_SECRET']; "
            "revocations are retried.",
        )
    if failure is None and local_only:
        return RevokeOutcome(ConnectionStatus.REVOKED, LOCAL_ONLY_INSTRUCTION)
    if failure is None:
        return RevokeOutcome(ConnectionStatus.REVOKED, api_key_instruction(connection))
    return RevokeOutcome(ConnectionStatus.REVOKING, _pending_message(failure))


def retry_pending_revocations() -> dict[str, int]:
    """Finish the disconnects Datadog did not confirm yet (run by a schedule); one that
    Datadog rate-limited waits until the time it asked for."""
    counts = {"revoked": 0, "still_revoking": 0, "waiting": 0}
    now = timezone.now()
    revoking = Connection.objects.filter(status=ConnectionStatus.REVOKING).order_by("pk")
    for connection in revoking:
        if connection.paused_until is not None and connection.paused_until > now:
            counts["waiting"] += 1
            continue
        outcome = revoke(connection, reason=connection.status_reason)
        counts["revoked" if outcome.done else "still_revoking"] += 1
    return counts


def api_key_instruction(connection: Connection, *, already: bool = False) -> str:
    """What the customer must still do in Datadog (no API can delete the key for us)."""
    first = (
        "This connection is already disconnected."
        if already
        else "Disconnected: Datadog revoked this integration's access and the stored "
        "credentials were deleted."
    )
    return (
        f"{first} One step is left, in Datadog: open Organization Settings → API Keys "
        f"({api_keys_page_url(connection)}), find the key named “OAuth Client API Key”"
        f"{key_ending(connection)} and revoke it. Datadog does not let integrations delete "
        "it themselves."
    )


def _revoke_tokens(row: Connection) -> DatadogPartnerError | None:
    """Revoke each stored token, forgetting each one as soon as Datadog confirmed it."""
    site = get_site(row.domain)
    for field_name, hint in TOKEN_FIELDS:
        if getattr(row, field_name) is None:
            continue
        try:
            _revoke_confirmed(row, site, field_name, hint)
        except CredentialsUnreadableError as exc:
            # Keep the ciphertext: once ENCRYPTION_KEYS is fixed the retry completes.
            record_error(row, "credentials_unreadable")
            return exc
        except (DatadogPartnerError, RetryableError, RateLimitedError) as exc:
            logger.warning("Revoking Datadog connection %s failed: %s", row.pk, exc)
            record_error(row, error_code_of(exc))
            if isinstance(exc, RateLimitedError):
                _pause(row, exc.retry_after)
            return exc
        setattr(row, field_name, None)
        row.save(update_fields=[field_name, "updated_at"])
    return None


def _revoke_confirmed(row: Connection, site: Site, field_name: str, hint: str) -> None:
    """Revoke one token, or raise. A 401 (or ``invalid_client``) alone never says that our
    client secret is wrong: Datadog's example also sends a Bearer token, which may be the
    one refused. The token endpoint gives the second signal (one token call):

    * it refuses our client too: ``InvalidClientError`` (the configuration alarm);
    * the grant is gone there (``invalid_grant``): nothing is left to revoke;
    * it issues tokens: the revoke is sent again with them, once; a second refusal is an
      ``OAuthError`` (retried later, no alarm).

    A refused access token whose refresh token is revoked already (or was never stored)
    died with its grant, or expires within the hour: it counts as revoked.
    """
    try:
        _send_revoke(row, site, field_name, hint)
    except InvalidClientError as exc:
        if field_name == "access_token" and row.refresh_token is None:
            logger.info("Datadog connection %s: the access token died with its grant.", row.pk)
            return
        logger.warning("Datadog refused revoking a token of connection %s: %s", row.pk, exc)
        if not _token_endpoint_accepts(row, site):
            return
        try:
            _send_revoke(row, site, field_name, hint)
        except InvalidClientError as again:
            raise OAuthError(
                "Datadog refused the revocation although its token endpoint accepts this "
                "integration's client credentials.",
                error_code="revoke_refused",
                status_code=again.status_code,
            ) from None


@sensitive_variables()
def _send_revoke(row: Connection, site: Site, field_name: str, hint: str) -> None:
    """``bearer``: the stored access token while it is valid, as Datadog's example sends it."""
    secret = getattr(row, field_name)
    access = row.access_token
    fresh = access is not None and row.expires_at is not None and row.expires_at > timezone.now()
    bearer = access.reveal() if fresh and access is not None else None
    oauth.revoke_token(site, secret.reveal(), hint, bearer=bearer)


@sensitive_variables()
def _token_endpoint_accepts(row: Connection, site: Site) -> bool:
    """Refresh the row's grant: True with new tokens stored, False when the grant is gone
    (both tokens forgotten); raises what the token endpoint answered otherwise."""
    assert row.refresh_token is not None
    try:
        tokens = oauth.refresh_tokens(site, row.refresh_token.reveal())
    except OAuthError as exc:
        # After a lost refresh answer Datadog may hold a newer refresh token: not proof.
        if exc.error_code != "invalid_grant" or row.refresh_answer_lost_at is not None:
            raise
        logger.info("Datadog connection %s: the grant is already revoked.", row.pk)
        row.access_token = row.refresh_token = None
        row.save(update_fields=["access_token", "refresh_token", "updated_at"])
        return False
    except DatadogPartnerError as exc:
        record_refresh_failure(row, exc)  # a lost answer is remembered, as for a refresh
        raise
    store_tokens(row, tokens)
    return True


def _pause(row: Connection, seconds: float) -> None:
    row.paused_until = timezone.now() + timedelta(seconds=seconds)
    row.save(update_fields=["paused_until", "updated_at"])


def _finish(row: Connection, reason: str) -> None:
    """Wipe what is left, cancel pending events, and mark the connection revoked."""

    row.access_token = None
    row.refresh_token = None
    row.api_key = None
    row.expires_at = None
    row.api_key_fingerprint = ""
    row.save(
        update_fields=[
            "access_token",
            "refresh_token",
            "api_key",
            "expires_at",
            "api_key_fingerprint",
            "updated_at",
        ]
    )
    cancelled = outbox.cancel_pending_for_connection(row)
    if cancelled:
        logger.info("Datadog connection %s: %s pending events cancelled.", row.pk, cancelled)
    set_status(row, ConnectionStatus.REVOKED, reason)


def _pending_message(failure: Exception) -> str:
    if isinstance(failure, CredentialsUnreadableError):
        why = (
            "the stored tokens cannot be decrypted with the configured ENCRYPTION_KEYS "
            "(the vendor must fix that setting)"
        )
    elif isinstance(failure, InvalidClientError):
        why = (
            "Datadog refused this integration's client credentials (a vendor configuration problem)"
        )
    elif isinstance(failure, ConfigurationError):
        why = "this site's Datadog integration is misconfigured (the vendor must fix it)"
    elif isinstance(failure, RetryableError | RateLimitedError):
        why = "Datadog could not be reached"
    else:
        # Datadog's own words only; the status and the host are in the log.
        said = getattr(failure, "description", "")
        why = "Datadog refused the request" + (f" (Datadog said: “{said}”)" if said else "")
    return (
        f"Disconnect requested, but {why}. The connection stays “Revoking”: nothing is sent "
        "to Datadog for it, and the revocation is retried automatically in the background."
    )
