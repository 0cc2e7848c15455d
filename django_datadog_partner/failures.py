"""Every way the connect flow can fail, as a reason code and the page that explains it.

Reason codes are stable (they are the ``reason`` of ``connection_failed`` and the
``?reason=`` of the error page); the texts are translatable and say what happened and what
to do next, in words a Datadog user can act on.

Longer than 300 lines for one concern: the table of reasons and their pages is mostly
translatable text (title, explanation, next step, HTTP status per reason), one entry per
failure; splitting it would only spread one table over files.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

INVALID_SITE = "invalid_site"
REGION_MISMATCH = "region_mismatch"
BAD_REQUEST = "bad_request"
NO_OWNER = "no_owner"
OWNER_NOT_ALLOWED = "owner_not_allowed"
SIGNED_OUT = "signed_out"
STATE_MISSING = "state_missing"
STATE_UNKNOWN = "state_unknown"
STATE_EXPIRED = "state_expired"
STATE_USED = "state_used"
STATE_OTHER_USER = "state_other_user"
STATE_OTHER_BROWSER = "state_other_browser"
ACCESS_DENIED = "access_denied"
INVALID_SCOPE = "invalid_scope"
AUTHORIZE_ERROR = "authorize_error"
CLIENT_NOT_PUBLISHED = "client_not_published"
REDIRECT_URI_MISMATCH = "redirect_uri_mismatch"
INVALID_CODE_VERIFIER = "invalid_code_verifier"
INVALID_GRANT = "invalid_grant"
FORBIDDEN = "forbidden"
INVALID_CLIENT = "invalid_client"
MISSING_SCOPES = "missing_scopes"
MISSING_API_KEYS_WRITE = "missing_api_keys_write"
USER_CANNOT_CREATE_KEYS = "user_cannot_create_keys"
DATADOG_UNAVAILABLE = "datadog_unavailable"
DATADOG_REDIRECT = "datadog_redirect"
DATADOG_TLS = "datadog_tls"
INVALID_TOKEN_RESPONSE = "invalid_token_response"
DATADOG_REFUSED = "datadog_refused"
MISCONFIGURED = "misconfigured"
UNEXPECTED = "unexpected"


@dataclass(frozen=True)
class FailurePage:
    status: int
    title: Promise
    explanation: Promise
    next_step: Promise


START_AGAIN = _(
    "Start again from the integration tile in Datadog (Integrations, open this "
    "integration, Configure tab, Connect Accounts)."
)
VENDOR_SIDE = _(
    "Nothing is wrong with your Datadog account. Please try again later; if it keeps "
    "happening, contact our support team and mention the error code below."
)
_STATE_PROBLEM = _("We could not match this answer from Datadog to a connection you started.")

PAGES: dict[str, FailurePage] = {
    INVALID_SITE: FailurePage(
        400,
        _("This link does not point to a Datadog site"),
        _(
            "The Datadog site or region in the link is not one we know, so we did not send "
            "you anywhere."
        ),
        START_AGAIN,
    ),
    REGION_MISMATCH: FailurePage(
        400,
        _("The Datadog region does not match the site you started from"),
        _(
            "Datadog answered for a different region than the Datadog site the connection "
            "was started from, so we stopped before sending anything to Datadog."
        ),
        START_AGAIN,
    ),
    BAD_REQUEST: FailurePage(
        400,
        _("This link is incomplete or malformed"),
        _("A parameter is missing, repeated or too long."),
        START_AGAIN,
    ),
    NO_OWNER: FailurePage(
        403,
        _("Your account cannot connect Datadog"),
        _("Your account has no workspace or organisation that it may connect to Datadog."),
        _("Ask an administrator of your organisation to connect Datadog or to give you access."),
    ),
    OWNER_NOT_ALLOWED: FailurePage(
        403,
        _("Your account may no longer connect this organisation"),
        _(
            "While you were in Datadog, your account lost access to the workspace or "
            "organisation this connection was started for, so nothing was connected."
        ),
        _(
            "Ask an administrator of your organisation to give you access again or to "
            "connect Datadog, or start again for an organisation you belong to."
        ),
    ),
    SIGNED_OUT: FailurePage(
        403,
        _("You are not signed in"),
        _(
            "Datadog sent you back, but this browser is no longer signed in (you signed "
            "out, or the session expired), so the connection could not be finished."
        ),
        _("Sign in, then start again from the integration tile in Datadog."),
    ),
    STATE_MISSING: FailurePage(
        400, _("This connection attempt is not valid"), _STATE_PROBLEM, START_AGAIN
    ),
    STATE_UNKNOWN: FailurePage(
        400, _("This connection attempt is not valid"), _STATE_PROBLEM, START_AGAIN
    ),
    STATE_EXPIRED: FailurePage(
        400,
        _("This connection attempt expired"),
        _("Connection attempts are valid for 10 minutes, and this one is older."),
        START_AGAIN,
    ),
    STATE_USED: FailurePage(
        400,
        _("This connection attempt was already used"),
        _(
            "This answer from Datadog has already been processed (for example after a "
            "reload or a double click). If the connection succeeded it is listed on your "
            "Datadog connections page."
        ),
        _("Nothing else to do if you are connected; otherwise start again from the tile."),
    ),
    STATE_OTHER_USER: FailurePage(
        400,
        _("This connection was started by another account"),
        _("The account you are signed in with is not the one that started this connection."),
        _("Sign in with the account that started it, or start again from the tile."),
    ),
    STATE_OTHER_BROWSER: FailurePage(
        400,
        _("This connection was started in another browser"),
        _(
            "The connection was started in a different browser or session than this one, "
            "so we did not finish it here."
        ),
        START_AGAIN,
    ),
    ACCESS_DENIED: FailurePage(
        403,
        _("Access was not granted"),
        _("You chose not to authorize this integration in Datadog, so nothing was connected."),
        _("To connect, start again from the integration tile and press Authorize."),
    ),
    INVALID_SCOPE: FailurePage(
        400,
        _("Datadog could not grant the requested permissions"),
        _(
            "Datadog refused a permission (scope) this integration asks for, for example "
            "because your organisation does not use the product it belongs to, or your "
            "Datadog user lacks it."
        ),
        _(
            "Ask a Datadog administrator of your organisation to connect, or contact our "
            "support team."
        ),
    ),
    AUTHORIZE_ERROR: FailurePage(
        400,
        _("Datadog could not authorize the connection"),
        _("Datadog ended the authorization with an error."),
        START_AGAIN,
    ),
    CLIENT_NOT_PUBLISHED: FailurePage(
        502,
        _("This integration is not available to your Datadog organisation yet"),
        _(
            "Datadog does not accept this integration's OAuth client here (invalid "
            "client_id): the integration is not published yet, and unpublished test "
            "clients only work in the partner's own Datadog organisation, or the test and "
            "production client ids are mixed up."
        ),
        _(
            "Contact our support team. Administrators: make sure CLIENT_ID and "
            "CLIENT_SECRET belong to the client whose listing sent the user here."
        ),
    ),
    REDIRECT_URI_MISMATCH: FailurePage(
        502,
        _("This integration's redirect address is not registered in Datadog"),
        _(
            "Datadog refused the connection because the redirect URI we sent does not "
            "match the ones registered on the integration's OAuth client (Mismatching "
            "redirect URI)."
        ),
        _(
            "Contact our support team. Administrators: register the redirect URI shown "
            "below on the OAuth client in Datadog's Developer Platform (test and "
            "published clients have separate lists) and check BASE_URL."
        ),
    ),
    INVALID_CODE_VERIFIER: FailurePage(
        400,
        _("Datadog did not accept the authorization"),
        _(
            "Datadog answered \u201cInvalid code or code verifier\u201d: the one-time "
            "authorization code or its proof key did not match."
        ),
        START_AGAIN,
    ),
    INVALID_GRANT: FailurePage(
        400,
        _("The authorization code expired or belongs to another region"),
        _(
            "Datadog refused the authorization code (invalid_grant). Codes are short-lived "
            "and single-use, and a code issued in one Datadog region cannot be used in "
            "another (for example after switching region on the consent page)."
        ),
        _(
            "Start again from the integration tile in the Datadog region your organisation "
            "lives in, and do not switch region on the consent page."
        ),
    ),
    FORBIDDEN: FailurePage(
        502,
        _("Datadog answered \u201cForbidden\u201d"),
        _(
            "Datadog refused the request. Your Datadog user may lack a permission the "
            "integration needs, or the authorization was revoked meanwhile."
        ),
        _(
            "Ask a Datadog administrator of your organisation to connect, or start again "
            "from the integration tile."
        ),
    ),
    INVALID_CLIENT: FailurePage(
        502,
        _("This integration's Datadog credentials were refused"),
        _("Datadog refused our OAuth client credentials. This is a problem on our side."),
        VENDOR_SIDE,
    ),
    MISSING_SCOPES: FailurePage(
        502,
        _("Datadog did not grant the permissions this integration needs"),
        _("The authorization Datadog granted lacks a permission (scope) this integration needs."),
        _(
            "Contact our support team. Administrators: add the missing scopes to the OAuth "
            "client in Datadog's Developer Platform; users then reconnect."
        ),
    ),
    MISSING_API_KEYS_WRITE: FailurePage(
        502,
        _("Datadog refused to create the integration's API key"),
        _(
            "This integration's OAuth client lacks the api_keys_write permission, which "
            "Datadog requires to create the API key used to send data. Your account was "
            "authorized, but nothing can be sent yet."
        ),
        _(
            "Contact our support team. Administrators: add the api_keys_write scope to the "
            "OAuth client in Datadog's Developer Platform (scope problems: "
            "marketplace@datadog.com); users then press Reconnect."
        ),
    ),
    USER_CANNOT_CREATE_KEYS: FailurePage(
        403,
        _("Your Datadog user may not create API keys"),
        _(
            "You authorised the integration, but Datadog refused to create the API key it "
            "needs to send data: your Datadog user lacks the permission to create API keys. "
            "Datadog lets users finish authorising without every permission an integration "
            "needs (for example when the connection is started outside the integration "
            "tile). Nothing can be sent yet."
        ),
        _(
            "Ask a Datadog administrator of your organisation to give your Datadog user the "
            "API Keys Write permission, then press \u201cCreate the API key again\u201d on "
            "the connection page; or let a Datadog user who has it (for example a Datadog "
            "Admin) connect from the integration tile."
        ),
    ),
    DATADOG_UNAVAILABLE: FailurePage(
        503,
        _("Datadog did not answer"),
        _("Datadog timed out or reported a temporary error while we finished the connection."),
        _("Wait a minute, then start again from the integration tile."),
    ),
    DATADOG_REDIRECT: FailurePage(
        502,
        _("Datadog answered unexpectedly"),
        _(
            "Datadog answered with a redirect. We never follow redirects when sending "
            "credentials, so the connection was stopped."
        ),
        VENDOR_SIDE,
    ),
    DATADOG_TLS: FailurePage(
        502,
        _("Datadog's certificate could not be verified"),
        _(
            "The secure connection to Datadog could not be verified, so nothing was sent "
            "and the connection was stopped."
        ),
        VENDOR_SIDE,
    ),
    INVALID_TOKEN_RESPONSE: FailurePage(
        502,
        _("Datadog's answer could not be used"),
        _("Datadog's answer did not contain a usable access token, so nothing was saved."),
        START_AGAIN,
    ),
    DATADOG_REFUSED: FailurePage(
        502,
        _("Datadog refused the connection"),
        _("Datadog refused to finish the connection; its message is shown below."),
        START_AGAIN,
    ),
    MISCONFIGURED: FailurePage(
        503,
        _("The Datadog integration is misconfigured"),
        _("This site's Datadog integration is not configured correctly."),
        VENDOR_SIDE,
    ),
    UNEXPECTED: FailurePage(
        503,
        _("Something went wrong"),
        _("An unexpected error stopped the connection."),
        VENDOR_SIDE,
    ),
}


def page_for(reason: str) -> FailurePage:
    """The page for ``reason``; unknown reasons (a hand-edited URL) get the generic page."""
    return PAGES.get(reason, PAGES[STATE_UNKNOWN])
