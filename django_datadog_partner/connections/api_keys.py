"""The connection's API key: keep a stored key that still works, else mint the marketplace key.

Datadog creates one "OAuth Client API Key" per organisation and OAuth client and shows its
value once. A key is never lent to another connection (see ``identity``): a 409 means only
the customer can recover, by revoking that key in Datadog. The connect flow asks the
marketplace endpoint itself (``identity.ask_marketplace``) and settles the answer here;
"Create the API key again" calls ``create_api_key``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.views.decorators.debug import sensitive_variables

from .. import crypto
from ..alarms import raise_alarm
from ..models import Connection, ConnectionStatus
from ..regions import get_site
from ..status import mark_broken, set_status
from .identity import (
    MISSING_CONFLICT,
    MISSING_PERMISSION,
    MISSING_REFUSED,
    MISSING_SCOPE,
    MISSING_UNCONFIRMED,
    MarketplaceAnswer,
    ask_marketplace,
    key_is_live,
    org_fields,
)

logger = logging.getLogger("django_datadog_partner")

API_KEYS_PAGE_PATH = "/organization-settings/api-keys"

KEY_CREATED = "created"
KEY_KEPT = "kept"
KEY_MISSING = "missing"

SCOPE_ALARM = "api_keys_write_missing"

#: ``last_error_code`` of a key_missing connection after a 401/403: whose problem it is.
REFUSAL_CODES = {MISSING_SCOPE: SCOPE_ALARM, MISSING_PERMISSION: "user_cannot_create_keys"}


@dataclass(frozen=True)
class APIKeyOutcome:
    result: str
    reason: str = ""
    detail: str = ""

    @property
    def missing(self) -> bool:
        return self.result == KEY_MISSING


def api_keys_page_url(connection: Connection) -> str:
    """Datadog's API Keys page for the connection's organisation (custom subdomain kept)."""
    return connection.site.rstrip("/") + API_KEYS_PAGE_PATH


@sensitive_variables()
def create_api_key(connection: Connection, *, access_token: str | None = None) -> APIKeyOutcome:
    """Give ``connection`` a working API key and set its status (active or key_missing).

    ``access_token`` is a token of this connection's grant; without it the stored one is
    used (refreshed first when needed). A stored key that still works is kept.
    """
    site = get_site(connection.domain)
    # Without fresh tokens, first prove the grant still works (raises NeedsReconnectError).
    token = access_token if access_token is not None else _stored_access_token(connection)
    if key_is_live(connection) is not False:
        set_status(connection, ConnectionStatus.ACTIVE, "The stored API key is still valid.")
        return APIKeyOutcome(KEY_KEPT)
    answer = ask_marketplace(site, token, connection.scopes)
    if answer.created:
        store_key(connection, answer)
    return settle(connection, answer, keep_key=False)


@sensitive_variables()
def settle(connection: Connection, answer: MarketplaceAnswer, *, keep_key: bool) -> APIKeyOutcome:
    """Set the status a marketplace answer leaves the connection in (its key already stored)."""
    if answer.created:
        set_status(connection, ConnectionStatus.ACTIVE, "Datadog created the API key.")
        return APIKeyOutcome(KEY_CREATED)
    if keep_key:
        set_status(connection, ConnectionStatus.ACTIVE, "The stored API key is still valid.")
        return APIKeyOutcome(KEY_KEPT)
    note_refusal(answer)
    mark_broken(
        connection,
        ConnectionStatus.KEY_MISSING,
        missing_key_reason(connection, answer.missing),
        REFUSAL_CODES.get(answer.missing, answer.error_code),
    )
    return APIKeyOutcome(KEY_MISSING, answer.missing, answer.detail)


@sensitive_variables()
def note_refusal(answer: MarketplaceAnswer) -> None:
    """A 401/403 for an OAuth client without ``api_keys_write`` is the vendor's to fix:
    raise the alarm (a user who may not create keys is told so, no alarm)."""
    if answer.missing == MISSING_SCOPE:
        raise_alarm(
            SCOPE_ALARM,
            f"Datadog refused to create an API key ({answer.error_code}): the OAuth client "
            "lacks the api_keys_write scope. Add it in Datadog's Developer Platform; affected "
            "connections must then be reconnected.",
        )


@sensitive_variables()
def store_key(connection: Connection, answer: MarketplaceAnswer) -> None:
    """Store the key Datadog just created, and the organisation Datadog named for it."""
    connection.api_key = answer.key
    connection.api_key_id = answer.key_id
    connection.api_key_last4 = crypto.last4(answer.key)
    connection.api_key_fingerprint = crypto.fingerprint(answer.key)
    connection.dd_org_id, connection.dd_org_name = org_fields(connection, answer.org)
    fields = ["api_key", "api_key_id", "api_key_last4", "api_key_fingerprint"]
    connection.save(update_fields=[*fields, "dd_org_id", "dd_org_name", "updated_at"])
    logger.info(
        "Datadog connection %s: API key …%s stored (organisation %s).",
        connection.pk,
        connection.api_key_last4,
        connection.dd_org_id or "not named by Datadog",
    )


def _stored_access_token(connection: Connection) -> str:
    from .tokens import access_token  # the lifecycle operations refresh on demand

    return access_token(connection)


def missing_key_reason(connection: Connection, reason: str) -> str:
    """The status reason stored (and shown to the customer) for a connection without a key.

    Where revoking the key cures it (``revoke_cures``), the reason says why and the
    connection's page gives the steps, Datadog's documented recovery for a lost key (revoke
    the "OAuth Client API Key", then authorise again), so they are said once; a refusal to
    create a key says what to do in the reason itself.
    """
    if reason == MISSING_CONFLICT and connection.api_key is not None:
        return (
            f"Datadog rejects this connection's API key{key_ending(connection)}, so it was "
            "probably revoked in Datadog, and creates no other while the organisation holds "
            "one. A revoked key can be restored in Datadog for 7 days: restore it on "
            "Datadog's API Keys page, then press \u201cCreate the API key again\u201d, which "
            "keeps a key Datadog accepts again (the health check notices a restore too). For "
            "a new key instead, follow the steps below; while Datadog still keeps the revoked "
            "key restorable it may refuse again."
        )
    texts = {
        MISSING_CONFLICT: "Datadog already holds this integration's API key for the "
        "organisation and shows it only once. It issues one per organisation, so the key "
        "may serve an earlier connection, possibly of another account, and revoking it "
        "stops that one.",
        MISSING_UNCONFIRMED: "Datadog did not confirm whether it created the API key.",
        MISSING_SCOPE: "Datadog refused to create the API key: the OAuth client lacks the "
        "api_keys_write scope. Once the vendor adds it, reconnect.",
        MISSING_PERMISSION: "Datadog refused to create the API key: the Datadog user who "
        "authorised may not create API keys (Datadog lets a user finish authorising without "
        "the permissions the integration needs). A Datadog administrator can grant that "
        "user the API Keys Write permission, then press \u201cCreate the API key "
        "again\u201d; or a Datadog user who holds it presses \u201cReconnect\u201d.",
        MISSING_REFUSED: "Datadog refused to create the API key. Press \u201cCreate the API "
        "key again\u201d or reconnect.",
    }
    return texts[reason]


def revoke_cures(connection: Connection) -> bool:
    """Whether revoking the organisation's key is the cure: it is for a 409 or a lost key,
    not for a refusal to create one."""
    return connection.last_error_code not in REFUSAL_CODES.values()


def key_recovery(connection: Connection) -> str:
    """The steps of the connection's page, for operators (admin, commands); "" where the
    status reason already says what to do."""
    if not revoke_cures(connection):
        return ""
    return (
        f"The customer revokes the key named \u201cOAuth Client API Key\u201d on Datadog's "
        f"API Keys page ({api_keys_page_url(connection)}) if it is listed, then authorises "
        "again with \u201cReconnect\u201d (or uses \u201cCreate the API key again\u201d)."
    )


def key_ending(connection: Connection) -> str:
    """`` (ending in abcd)``: how the customer recognises the key in Datadog."""
    return f" (ending in {connection.api_key_last4})" if connection.api_key_last4 else ""
