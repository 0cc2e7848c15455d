"""The connection's API key: keep a stored key that still works, else mint the marketplace key.

Datadog creates one "OAuth Client API Key" per organisation and shows its value once. So a
stored key is validated and kept (no marketplace call); only a connection without a usable
key calls ``POST /api/v2/api_keys/marketplace``. A 409 means the organisation's key already
exists: another connection of the same organisation may hold it (then it is shared),
otherwise only the customer can recover by revoking that key in Datadog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from django.views.decorators.debug import sensitive_variables

from .. import crypto
from ..client import DatadogClient, json_body
from ..exceptions import (
    CredentialsUnreadableError,
    DatadogPartnerError,
    RetryableError,
    TransportRefusedError,
    UnreadableAnswerError,
    datadog_error_messages,
)
from ..models import Connection, ConnectionStatus
from ..regions import Site, get_site
from .status import mark_broken, raise_alarm, set_status

logger = logging.getLogger("django_datadog_partner")

MARKETPLACE_PATH = "/api/v2/api_keys/marketplace"
API_KEYS_PAGE_PATH = "/organization-settings/api-keys"

KEY_CREATED = "created"
KEY_KEPT = "kept"
KEY_SHARED = "shared"
KEY_MISSING = "missing"

#: Why a key is missing (``APIKeyOutcome.reason``).
MISSING_CONFLICT = "conflict"  # Datadog holds the org's key already (409).
MISSING_UNCONFIRMED = "unconfirmed"  # No clear answer: the key may or may not exist.
MISSING_SCOPE = "api_keys_write"  # The OAuth client lacks api_keys_write (401/403).
MISSING_REFUSED = "refused"  # Any other refusal; Datadog's text is in ``detail``.

SCOPE_ALARM = "api_keys_write_missing"

#: Statuses whose stored key may be lent to another connection of the same organisation.
SHAREABLE_STATUSES = (ConnectionStatus.ACTIVE, ConnectionStatus.KEY_MISSING)


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


@sensitive_variables("access_token", "token", "stored")
def create_api_key(connection: Connection, *, access_token: str | None = None) -> APIKeyOutcome:
    """Give ``connection`` a working API key and set its status (active or key_missing).

    ``access_token`` is the token just obtained by the connect flow; without it the
    connection's stored token is used (refreshed first when needed).
    """
    site = get_site(connection.domain)
    # Without fresh tokens, first prove the grant still works (raises NeedsReconnectError).
    token = access_token if access_token is not None else _stored_access_token(connection)
    stored = _stored_key(connection)
    if stored is not None and DatadogClient(site).validate_api_key(stored) is not False:
        set_status(connection, ConnectionStatus.ACTIVE, "The stored API key is still valid.")
        return APIKeyOutcome(KEY_KEPT)
    client = DatadogClient(site)
    try:
        response = client.request(
            "POST",
            client.api_url(MARKETPLACE_PATH),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
    except (RetryableError, TransportRefusedError) as exc:
        return _missing(connection, MISSING_UNCONFIRMED, error_code=_code(exc))
    return _handle_marketplace_answer(connection, site, response)


def _handle_marketplace_answer(
    connection: Connection, site: Site, response: requests.Response
) -> APIKeyOutcome:
    status = response.status_code
    if 200 <= status < 300:
        parsed = _parse_key(response)
        if parsed is None:
            # The key may exist in Datadog now, but we could not read it: treat as lost.
            return _missing(connection, MISSING_UNCONFIRMED, error_code="invalid_key_response")
        _store_key(connection, *parsed)
        set_status(connection, ConnectionStatus.ACTIVE, "Datadog created the API key.")
        return APIKeyOutcome(KEY_CREATED)
    if status == 409:
        if _share_key_of_same_org(connection, site):
            set_status(connection, ConnectionStatus.ACTIVE, "Uses the API key of its Datadog org.")
            return APIKeyOutcome(KEY_SHARED)
        return _missing(connection, MISSING_CONFLICT, error_code="http_409")
    if status in (401, 403):
        raise_alarm(
            SCOPE_ALARM,
            f"Datadog refused to create an API key (HTTP {status}): the OAuth client lacks "
            "the api_keys_write scope. Add it in Datadog's Developer Platform; affected "
            "connections must then be reconnected.",
        )
        return _missing(connection, MISSING_SCOPE, error_code=f"http_{status}")
    if status == 429 or status >= 500:
        return _missing(connection, MISSING_UNCONFIRMED, error_code=f"http_{status}")
    detail = "; ".join(datadog_error_messages(response))
    return _missing(connection, MISSING_REFUSED, error_code=f"http_{status}", detail=detail)


def _parse_key(response: requests.Response) -> tuple[str, str] | None:
    try:
        data = json_body(response).get("data") or {}
        key = data["attributes"]["key"]
        key_id = str(data.get("id") or "")
    except (UnreadableAnswerError, AttributeError, KeyError, TypeError):
        return None
    if not isinstance(key, str) or not 8 <= len(key) <= 256 or not key.isalnum():
        return None
    return key, key_id[:100]


@sensitive_variables("key")
def _store_key(connection: Connection, key: str, key_id: str) -> None:
    connection.api_key = key
    connection.api_key_id = key_id
    connection.api_key_last4 = crypto.last4(key)
    connection.api_key_fingerprint = crypto.fingerprint(key)
    connection.save(
        update_fields=[
            "api_key",
            "api_key_id",
            "api_key_last4",
            "api_key_fingerprint",
            "updated_at",
        ]
    )
    logger.info("Datadog connection %s: API key …%s stored.", connection.pk, crypto.last4(key))


def _share_key_of_same_org(connection: Connection, site: Site) -> bool:
    """Lend the working key of another connection to the same Datadog organisation."""
    if not connection.dd_org_id:
        return False
    others = (
        Connection.objects.filter(
            domain=connection.domain,
            dd_org_id=connection.dd_org_id,
            api_key__isnull=False,
            status__in=SHAREABLE_STATUSES,
        )
        .exclude(pk=connection.pk)
        .order_by("-updated_at")
    )
    for other in others:
        key = _stored_key(other)
        if key is not None and DatadogClient(site).validate_api_key(key):
            _store_key(connection, key, other.api_key_id)
            logger.info(
                "Datadog connection %s shares the API key of connection %s (same org).",
                connection.pk,
                other.pk,
            )
            return True
    return False


def _stored_key(connection: Connection) -> str | None:
    if connection.api_key is None:
        return None
    try:
        return connection.api_key.reveal()
    except CredentialsUnreadableError:
        logger.warning("Datadog connection %s: stored API key is unreadable.", connection.pk)
        return None


def _stored_access_token(connection: Connection) -> str:
    from .tokens import access_token  # the lifecycle operations refresh on demand

    return access_token(connection)


def _missing(
    connection: Connection, reason: str, *, error_code: str, detail: str = ""
) -> APIKeyOutcome:
    mark_broken(
        connection,
        ConnectionStatus.KEY_MISSING,
        missing_key_reason(connection, reason),
        error_code,
    )
    return APIKeyOutcome(KEY_MISSING, reason, detail[:300])


def missing_key_reason(connection: Connection, reason: str) -> str:
    """The status reason stored (and shown in the admin) for a connection without a key."""
    page = api_keys_page_url(connection)
    recover = (
        f"In Datadog, open {page}, revoke the key named \u201cOAuth Client API Key\u201d, "
        "then press \u201cCreate the API key again\u201d."
    )
    texts = {
        MISSING_CONFLICT: "Datadog already holds this integration's API key for the "
        "organisation and shows it only once. " + recover,
        MISSING_UNCONFIRMED: "Datadog did not confirm the API key. Press \u201cCreate the API "
        "key again\u201d; if Datadog then reports that the key exists: " + recover,
        MISSING_SCOPE: "Datadog refused to create the API key: the OAuth client lacks the "
        "api_keys_write scope. Once the vendor adds it, reconnect.",
        MISSING_REFUSED: "Datadog refused to create the API key. Press \u201cCreate the API "
        "key again\u201d or reconnect.",
    }
    return texts[reason]


def _code(exc: Exception) -> str:
    if isinstance(exc, DatadogPartnerError) and exc.status_code:
        return f"http_{exc.status_code}"
    return "unreachable"
