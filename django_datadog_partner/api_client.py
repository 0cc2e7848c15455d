"""Datadog's official Python client (``datadog-api-client``) on a connection's OAuth token.

Optional: install the ``api-client`` extra. ``api_for`` (``api.py``) sends raw calls; this
gives host code Datadog's typed client for incidents, users, monitors and the rest::

    from datadog_api_client.v2.api.users_api import UsersApi
    from django_datadog_partner.api import api_client_for

    with api_client_for(connection) as client:
        orgs = UsersApi(client).list_user_organizations(user_id)

As ``api_for`` does: requests go to the API host of the connection's region (the site
table, never the environment's ``DD_SITE``); every request carries a token that is
refreshed first when it expires within five minutes, and a 401 refreshes it once and
sends the request again. The client carries only ``Authorization: Bearer``: an API or
application key in the environment (``DD_API_KEY``, ``DD_APP_KEY``, which the client
otherwise picks up) is never sent on a customer's behalf. No retries and no redirects are
followed (a redirect is an ``ApiException`` with its 3xx status). Datadog's refusals are
the client's own ``ApiException`` subclasses; a connection that cannot be used raises the
package's ``NeedsReconnectError`` or ``CredentialsUnreadableError``.
"""

from __future__ import annotations

from typing import Any

from django.views.decorators.debug import sensitive_variables

from .conf import app_settings
from .connections.rows import unusable_error
from .connections.tokens import access_token, refresh
from .models import Connection
from .regions import get_site

EXTRA = "pip install 'django-datadog-partner[api-client]'"

try:
    import urllib3
    from datadog_api_client import ApiClient, Configuration
    from datadog_api_client.exceptions import UnauthorizedException
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        f"api_client_for() needs Datadog's official client: {EXTRA}", name=exc.name
    ) from exc

BEARER = "AuthZ"  # the client's name for the OAuth scheme


class ConnectionConfiguration(Configuration):
    """A ``Configuration`` whose access token is the connection's, fresh when read."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        super().__init__(
            host=get_site(connection.domain).api_url,
            request_timeout=app_settings.HTTP_TIMEOUT,
        )
        self.api_key = {}  # the client reads DD_API_KEY / DD_APP_KEY: never ours to send
        self.enable_retry = False
        self.retry_policy = urllib3.Retry(total=0, redirect=False)

    @property
    def access_token(self) -> str:
        return access_token(self._connection)

    @access_token.setter
    def access_token(self, value: Any) -> None:
        # Configuration.__init__ assigns one; the token always comes from the connection.
        pass

    @sensitive_variables()
    def auth_settings(self) -> dict[str, dict[str, str]]:
        """Only the OAuth scheme, whatever keys the environment holds."""
        return {
            BEARER: {
                "type": "oauth2",
                "in": "header",
                "key": "Authorization",
                "value": f"Bearer {self.access_token}",
            }
        }


class ConnectionApiClient(ApiClient):
    """An ``ApiClient`` that sends every request with the connection's current token and
    refreshes it once after a 401."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        super().__init__(ConnectionConfiguration(connection))

    @sensitive_variables()
    def call_api(
        self,
        resource_path: str,
        method: str,
        path_params: Any = None,
        query_params: Any = None,
        header_params: dict[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        headers = dict(header_params or {})
        bearer = "Authorization" in headers  # the operation takes OAuth tokens
        for attempt in (1, 2):
            if bearer:  # paginated calls reuse their first headers: always the newest token
                headers["Authorization"] = f"Bearer {access_token(self.connection)}"
            try:
                return super().call_api(
                    resource_path, method, path_params, query_params, dict(headers),
                    *args, **kwargs,
                )  # fmt: skip
            except UnauthorizedException:
                if attempt == 2 or not bearer or not refresh(self.connection, force=True):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


def api_client_for(connection: Connection) -> ConnectionApiClient:
    """Datadog's typed ``ApiClient`` as ``connection``'s authorising user; close it (or
    use it as a context manager) when done. Raises ``NeedsReconnectError`` or
    ``CredentialsUnreadableError`` at once for a connection that cannot call Datadog."""
    if not connection.holds_tokens:
        raise unusable_error(connection)
    return ConnectionApiClient(connection)
