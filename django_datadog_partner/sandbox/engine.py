"""The fake Datadog's one entry point: a pure dispatch from a request to an answer.

Django views (the sandbox server) and ``django_datadog_partner.testing`` (``responses``
callbacks, no server) both call :func:`handle`, so they behave identically.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

from . import intake, oauth_server, users
from .intake import Refused
from .protocol import Answer, Context, Request, api_errors
from .state import Store

Handler = Callable[[Request, Context], Answer]

ROUTES: dict[str, tuple[str, Handler]] = {
    "/api/v1/validate": ("GET", intake.validate_key),
    "/api/v1/events": ("POST", intake.post_event),
    "/api/v2/series": ("POST", intake.post_series),
    "/api/v2/logs": ("POST", intake.post_logs),
    "/api/v1/check_run": ("POST", intake.post_check_run),
    "/api/v2/api_keys/marketplace": ("POST", oauth_server.create_marketplace_key),
    "/oauth2/v1/token": ("POST", oauth_server.token),
    "/oauth2/v1/revoke": ("POST", oauth_server.revoke),
    "/api/v2/users/{user_id}/orgs": ("GET", users.user_orgs),
}
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _pattern(route: str) -> re.Pattern[str]:
    parts = PLACEHOLDER.split(route)
    # split() alternates literal text and placeholder names.
    return re.compile(
        "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
        + "$"
    )


PATTERNS = [(_pattern(route), route) for route in ROUTES]


def match(path: str) -> tuple[str, dict[str, str]] | None:
    """The route ``path`` belongs to and its placeholder values, or None."""
    for pattern, route in PATTERNS:
        found = pattern.match(path)
        if found is not None:
            return route, found.groupdict()
    return None


def default_store() -> Store:
    from .store import OrmStore  # the sandbox app's tables; needs the app installed

    return OrmStore()


def handle(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    query: Mapping[str, str],
    *,
    store: Store | None = None,
    domain: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> Answer:
    """Answer one request to ``path`` (relative to the site's API/logs/web URL).

    ``domain`` is the site the request arrived at (keys and tokens of an org bound to
    another site are refused); ``sleep`` performs injected delays.
    """
    matched = match(path.rstrip("/") or "/")
    if matched is None:
        return api_errors(404, "Not found")
    route, params = matched
    allowed, handler = ROUTES[route]
    if method.upper() != allowed:
        return api_errors(405, "Method Not Allowed", headers={"Allow": allowed})
    request = Request(
        method=method.upper(),
        path=path,
        headers={str(k).lower(): str(v) for k, v in headers.items()},
        body=body or b"",
        query=query,
        params=params,
    )
    context = Context(store=store or default_store(), domain=domain, sleep=sleep)
    try:
        return handler(request, context)
    except Refused as refused:
        return refused.answer
