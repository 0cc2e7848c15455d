"""Which Datadog organisation a connection belongs to: Datadog says so, never the browser.

**The trust rule.** Which organisation a connection belongs to, whether two connections
share one, and whether a stored API key may serve newly obtained tokens are decided here,
and only from what Datadog answers over authenticated back-channel calls to the region's
API host:

* ``POST /api/v2/api_keys/marketplace`` with the access token just obtained (Datadog docs,
  "OAuth2 Authorization Endpoints Reference", tab "API Key Creation Endpoints"). Datadog
  issues one key per organisation and OAuth client: **201** means the token's organisation
  held no key of ours and the answer is its new key, with ``relationships.created_by``
  naming the user who authorised; **409** means that organisation already holds one.
* ``GET /api/v2/users/{user_id}/orgs`` with ``Authorization: Bearer`` for that user
  (Datadog API v2, operation ``ListUserOrganizations``: OAuth with no scope, permission
  ``OPEN``): ``data.relationships.org`` is the user's organisation, named in
  ``included``. Only this answer fills ``Connection.dd_org_id``/``dd_org_name``; when it
  fails the connection simply stays unverified.
* ``GET /api/v1/validate`` of a stored key (Datadog API v1, "Validate API key"): whether
  the organisation it belongs to still holds it.

The callback's ``dd_oid``, ``dd_org_name`` and ``site`` travel through the user's browser,
and anyone can append them to their own callback: they never select, merge or lend
anything (``site`` only picks a web address inside the region whose token host answered).

**Key reuse: none across connections.** A key serves only the connection it was created
for. Since Datadog issues one key per organisation and OAuth client, one Datadog
organisation can be connected by one owner: a second owner gets 409 and a ``key_missing``
connection with Datadog's documented recovery (revoke the "OAuth Client API Key" in that
organisation, then authorise again). Only connections of the flow's own owner and region
are ever considered.

Longer than 300 lines for one concern, the trust rule: the facts read from Datadog (the
marketplace answer, the user's organisation, a key's validation) and the decisions made
only from them (placement, key reuse, the organisation fields) stay in one module, so no
other module can decide an organisation from anything else.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from django.views.decorators.debug import sensitive_variables

from ..client import DatadogClient, Verdict, classify, json_body
from ..exceptions import (
    CredentialsUnreadableError,
    DatadogPartnerError,
    RetryableError,
    TransportRefusedError,
    UnreadableAnswerError,
    datadog_error_messages,
)
from ..models import AuthorizationRequest, Connection
from ..regions import Site
from ..status import reveal

logger = logging.getLogger("django_datadog_partner")

MARKETPLACE_PATH = "/api/v2/api_keys/marketplace"
#: The private scope the marketplace endpoint needs on the OAuth client.
KEY_SCOPE = "api_keys_write"
USER_ORGS_PATH = "/api/v2/users/{user_id}/orgs"
DATADOG_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")

#: Why the marketplace answer gave no key (``MarketplaceAnswer.missing``).
MISSING_CONFLICT = "conflict"  # 409: the organisation holds its key already.
MISSING_UNCONFIRMED = "unconfirmed"  # No clear answer: the key may or may not exist.
MISSING_SCOPE = "api_keys_write"  # 401/403, and the token answer lacks api_keys_write.
MISSING_PERMISSION = "user_permission"  # 401/403 although the token holds the scope.
MISSING_REFUSED = "refused"  # Any other refusal; Datadog's text is in ``detail``.


@dataclass(frozen=True)
class VerifiedOrg:
    """An organisation as Datadog named it (``ListUserOrganizations``)."""

    id: str
    name: str


@dataclass(frozen=True)
class MarketplaceAnswer:
    """What Datadog said about the token's organisation: the marketplace answer and, after
    a 201, the organisation of the user who created the key (None: not named)."""

    key: str = field(default="", repr=False)
    key_id: str = ""
    creator_id: str = ""
    org: VerifiedOrg | None = None
    missing: str = ""
    error_code: str = ""
    detail: str = ""

    @property
    def created(self) -> bool:
        """201: the organisation had no key of ours; ``key`` is its new one."""
        return bool(self.key)

    @property
    def conflict(self) -> bool:
        """409: the organisation already holds its key."""
        return self.missing == MISSING_CONFLICT


@dataclass(frozen=True)
class Placement:
    """Which connection new tokens go to (``target_id`` None: a new one), and whether the
    stored key stays (a 409 for a connection whose key is live)."""

    target_id: int | None
    keep_key: bool = False


# --- Facts from Datadog ----------------------------------------------------------------


@sensitive_variables()
def ask_marketplace(site: Site, access_token: str, scopes: Sequence[str]) -> MarketplaceAnswer:
    """Ask Datadog for the token's organisation's key; 409 and refusals are answers too.

    ``scopes`` are those the token answer granted: they tell a 401/403 for a client
    without ``api_keys_write`` from one for a user who may not create keys. After a 201,
    the organisation is looked up for the key's creator (best effort).
    """
    answer = _post_marketplace(site, access_token, scopes)
    if not answer.created:
        return answer
    return dataclasses.replace(answer, org=verify_org(site, access_token, answer.creator_id))


@sensitive_variables()
def _post_marketplace(site: Site, access_token: str, scopes: Sequence[str]) -> MarketplaceAnswer:
    client = DatadogClient(site)
    try:
        response = client.request(
            "POST",
            client.api_url(MARKETPLACE_PATH),
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
    except (RetryableError, TransportRefusedError) as exc:
        code = f"http_{exc.status_code}" if exc.status_code else "unreachable"
        return MarketplaceAnswer(missing=MISSING_UNCONFIRMED, error_code=code)
    return _marketplace_answer(response, scopes)


def _marketplace_answer(response: requests.Response, scopes: Sequence[str]) -> MarketplaceAnswer:
    answer = classify(response)
    code = answer.code
    if answer.verdict is Verdict.SUCCESS:
        parsed = _parse_key(response)
        if parsed is None:
            # The key may exist in Datadog now, but we could not read it: treat as lost.
            return MarketplaceAnswer(missing=MISSING_UNCONFIRMED, error_code="invalid_key_response")
        return parsed
    if answer.verdict is Verdict.CONFLICT:
        return MarketplaceAnswer(missing=MISSING_CONFLICT, error_code=code)
    if answer.verdict in (Verdict.UNAUTHORIZED, Verdict.FORBIDDEN):
        return MarketplaceAnswer(missing=refusal_reason(scopes), error_code=code)
    if answer.retryable:
        return MarketplaceAnswer(missing=MISSING_UNCONFIRMED, error_code=code)
    detail = "; ".join(datadog_error_messages(response))[:300]
    return MarketplaceAnswer(missing=MISSING_REFUSED, error_code=code, detail=detail)


def refusal_reason(scopes: Sequence[str]) -> str:
    """Whose a marketplace 401/403 is. Datadog lets a user finish authorising without the
    permissions the scopes need (when the flow starts outside its tile), so only a token
    answer that lists scopes without ``api_keys_write`` blames the OAuth client. An answer
    that lists none proves nothing: the user's, so one user never raises a vendor alarm."""
    if scopes and KEY_SCOPE not in scopes:
        return MISSING_SCOPE
    if not scopes:
        logger.warning("Datadog refused to create an API key; the token answer listed no scopes.")
    return MISSING_PERMISSION


@sensitive_variables()
def _parse_key(response: requests.Response) -> MarketplaceAnswer | None:
    data = _dig(_json(response), "data")
    key = _dig(data, "attributes", "key")
    if not isinstance(key, str) or not 8 <= len(key) <= 256 or not key.isalnum():
        return None
    key_id = _dig(data, "id")
    creator = _dig(data, "relationships", "created_by", "data", "id")
    return MarketplaceAnswer(
        key=key,
        key_id=str(key_id)[:100] if isinstance(key_id, str | int) else "",
        creator_id=creator if isinstance(creator, str) and DATADOG_ID.match(creator) else "",
    )


@sensitive_variables()
def verify_org(site: Site, access_token: str, user_id: str) -> VerifiedOrg | None:
    """The organisation of Datadog user ``user_id``, or None when Datadog does not say."""
    if not DATADOG_ID.match(user_id or ""):
        return None
    client = DatadogClient(site)
    try:
        response = client.request(
            "GET",
            client.api_url(USER_ORGS_PATH.format(user_id=user_id)),
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
    except DatadogPartnerError as exc:
        logger.warning("Datadog did not name the organisation (%s); left unverified.", exc)
        return None
    body = _json(response) if response.status_code == 200 else None
    org_id = _dig(body, "data", "relationships", "org", "data", "id")
    if not isinstance(org_id, str) or not DATADOG_ID.match(org_id):
        logger.warning(
            "Datadog did not name the organisation (HTTP %s); left unverified.",
            response.status_code,
        )
        return None
    return VerifiedOrg(org_id, _org_name(body, org_id))


def _org_name(body: Any, org_id: str) -> str:
    included = _dig(body, "included")
    for item in included if isinstance(included, list) else []:
        if _dig(item, "type") == "orgs" and _dig(item, "id") == org_id:
            name = _dig(item, "attributes", "name")
            if isinstance(name, str):
                return "".join(ch for ch in name if ch.isprintable()).strip()[:255]
    return ""


def _json(response: requests.Response) -> Any:
    try:
        return json_body(response)
    except UnreadableAnswerError:
        return None


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def stored_key(connection: Connection) -> str | None:
    """The connection's API key in plaintext, or None (none stored, or unreadable: then
    the connection is marked so, as everywhere)."""
    if connection.api_key is None:
        return None
    try:
        return reveal(connection, connection.api_key)
    except CredentialsUnreadableError:
        return None


@sensitive_variables()
def key_is_live(connection: Connection) -> bool | None:
    """Whether the connection's stored key still works: False without one; None: unknown."""
    key = stored_key(connection)
    if key is None:
        return False
    return DatadogClient(connection.domain).validate_api_key(key)


# --- Decisions ------------------------------------------------------------------------


def same_owner(pending: AuthorizationRequest, domain: str) -> Iterator[Connection]:
    """The flow owner's connections on ``domain``, newest first: the only ones considered."""
    yield from Connection.objects.filter(
        owner_content_type_id=pending.owner_content_type_id,
        owner_object_id=pending.owner_object_id,
        domain=domain,
    ).order_by("-updated_at", "-pk")


@sensitive_variables()
def place(
    pending: AuthorizationRequest, domain: str, answer: MarketplaceAnswer
) -> Placement | None:
    """Where the tokens of ``pending``'s flow go; None when Datadog's answer cannot tell.

    Keyless connections (a failed earlier attempt, a revoked connection) carry no key to
    misroute, so an answer that proves nothing may still land on one.
    """
    rows = list(same_owner(pending, domain))
    reconnecting = next((c for c in rows if c.pk == pending.reconnect_of_id), None)
    keyless = [c for c in rows if c.api_key is None]
    if answer.created:
        return _place_new_key(rows, reconnecting, keyless, answer.org)
    if answer.conflict:
        if reconnecting is not None:
            return Placement(reconnecting.pk, keep_key=key_is_live(reconnecting) is not False)
        # A 409 names no key: it is taken as the owner's one connection's organisation,
        # and beside several it could be any of theirs, so it joins none of their keys.
        if len(rows) == 1 and rows[0].api_key is not None and key_is_live(rows[0]) is not False:
            return Placement(rows[0].pk, keep_key=True)
        return Placement(keyless[0].pk if keyless else None)
    # No decisive answer (timeout, 5xx, 401/403, other refusals): the organisation is unknown.
    if reconnecting is not None:
        return Placement(reconnecting.pk) if reconnecting.api_key is None else None
    if len(keyless) < len(rows):
        return None
    return Placement(keyless[0].pk if keyless else None)


def _place_new_key(
    rows: list[Connection],
    reconnecting: Connection | None,
    keyless: list[Connection],
    org: VerifiedOrg | None,
) -> Placement:
    """201: the token's organisation had no key, so no connection whose key still works
    belongs to it."""
    if org is not None:
        match = next((c for c in rows if c.dd_org_id == org.id), None)
        if match is not None:
            return Placement(match.pk)
    if reconnecting is not None:
        contradicted = org is not None and reconnecting.dd_org_id not in ("", org.id)
        if not contradicted and key_is_live(reconnecting) is False:
            # Datadog's documented recovery: revoke the lost key, then authorise again.
            return Placement(reconnecting.pk)
    blank = [c for c in keyless if not c.dd_org_id]
    return Placement(blank[0].pk if blank else None)


def org_fields(connection: Connection, org: VerifiedOrg | None) -> tuple[str, str]:
    """``(dd_org_id, dd_org_name)`` for a connection given a new key of ``org``.

    Empty when Datadog did not name the organisation, or when another connection of the
    same owner and region already stands for it (one connection per organisation).
    """
    if org is None:
        return "", ""
    taken = (
        Connection.objects.filter(
            owner_content_type_id=connection.owner_content_type_id,
            owner_object_id=connection.owner_object_id,
            domain=connection.domain,
            dd_org_id=org.id,
        )
        .exclude(pk=connection.pk)
        .exists()
    )
    if taken:
        logger.warning(
            "Datadog connection %s: organisation %s is already another connection's; "
            "left unverified.",
            connection.pk,
            org.id,
        )
        return "", ""
    return org.id, org.name
