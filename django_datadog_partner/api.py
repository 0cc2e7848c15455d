"""Datadog's API on a connection's behalf (``Authorization: Bearer``), for host code.

::

    from django_datadog_partner.api import api_for

    users = api_for(connection).get("/api/v2/users", params={"page[size]": "10"})

``api_client_for(connection)`` gives Datadog's official typed client on the same token
(the ``api-client`` extra; see ``api_client``).

Requests go to the API host of the connection's own region. The access token is refreshed
first when it expires within five minutes (row-locked, see ``connections.tokens``), and
once more if Datadog answers 401. Failures raise the package's exceptions; a 401 or 403 on
an API call never changes the connection's status (it may only mean a missing scope):
uninstalls are detected by token refresh and the daily health check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from django.views.decorators.debug import sensitive_variables

from .client import DatadogClient, Verdict, classify, json_body, retry_error
from .connections.tokens import access_token, refresh
from .exceptions import (
    DatadogPartnerError,
    UnreadableAnswerError,
)
from .models import Connection


class DatadogAPI:
    """Bearer calls for one connection; paths are relative to its region's API host."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._client = DatadogClient(connection.domain)

    @sensitive_variables()
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send one call and return the 2xx response; anything else raises.

        Raises ``NeedsReconnectError``/``CredentialsUnreadableError`` (no request is made
        for a connection that cannot be used), ``RateLimitedError`` (429),
        ``RetryableError`` (timeouts, 5xx) and ``DatadogPartnerError`` (other answers,
        with ``status_code`` and a redacted ``response_summary``).
        """
        url = self._url(path)
        token = access_token(self.connection)
        response = self._send(method, url, token, params, json, headers, timeout)
        if response.status_code == 401 and refresh(self.connection, force=True):
            token = access_token(self.connection)
            response = self._send(method, url, token, params, json, headers, timeout)
        return _checked(response, method, path)

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET and decode the JSON answer (``None`` for an empty body)."""
        return _decode(self.request("GET", path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> Any:
        return _decode(self.request("POST", path, **kwargs))

    def put(self, path: str, **kwargs: Any) -> Any:
        return _decode(self.request("PUT", path, **kwargs))

    def patch(self, path: str, **kwargs: Any) -> Any:
        return _decode(self.request("PATCH", path, **kwargs))

    def delete(self, path: str, **kwargs: Any) -> Any:
        return _decode(self.request("DELETE", path, **kwargs))

    def _url(self, path: str) -> str:
        # Only a path: the host always comes from the site table, never from the caller.
        if not path.startswith("/") or path.startswith("//"):
            raise ValueError(f"Give a path such as '/api/v2/users', not {path[:40]!r}.")
        return self._client.api_url(path)

    @sensitive_variables()
    def _send(
        self,
        method: str,
        url: str,
        token: str,
        params: Mapping[str, str] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        timeout: tuple[float, float] | None,
    ) -> requests.Response:
        merged = {"Accept": "application/json", **(headers or {})}
        merged["Authorization"] = f"Bearer {token}"
        return self._client.request(
            method, url, headers=merged, params=params, json=json, timeout=timeout
        )


def api_for(connection: Connection) -> DatadogAPI:
    """Datadog's API as ``connection``'s authorising user (scopes as granted)."""
    return DatadogAPI(connection)


def api_client_for(connection: Connection) -> Any:
    """Datadog's official ``datadog_api_client.ApiClient`` as ``connection``'s authorising
    user (the ``api-client`` extra; ``ImportError`` naming it when it is not installed)."""
    from .api_client import api_client_for as build

    return build(connection)


def _checked(response: requests.Response, method: str, path: str) -> requests.Response:
    answer = classify(response)
    if answer.verdict is Verdict.SUCCESS:
        return response
    where = f"{method} {path.split('?', 1)[0]}"
    if (transient := retry_error(answer, response, where)) is not None:
        raise transient
    if answer.verdict in (Verdict.UNAUTHORIZED, Verdict.FORBIDDEN):
        raise DatadogPartnerError(
            f"Datadog refused {where}: the connection may lack the scope this endpoint needs, "
            "or its authorization was revoked.",
            response=response,
        )
    raise DatadogPartnerError(f"Datadog refused {where}.", response=response)


def _decode(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return json_body(response)
    except UnreadableAnswerError:
        raise DatadogPartnerError(
            "Datadog's answer is not JSON; use request() for the raw response.",
            response=response,
        ) from None
