"""Requests, answers and error shapes of the fake Datadog, shared by every handler."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from django.utils import timezone

from .state import Store

JSON = "application/json"


class Answer(NamedTuple):
    """What the fake Datadog answers: status, headers and the body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    query: Mapping[str, str]
    params: Mapping[str, str] = field(default_factory=dict)
    """Values of the route's ``{name}`` placeholders."""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def content_type(self) -> str:
        return self.header("content-type").split(";", 1)[0].strip().lower()


@dataclass
class Context:
    """Where the request arrived and what it may use."""

    store: Store
    domain: str = ""
    sleep: Callable[[float], None] = time.sleep

    def now(self) -> datetime:
        return timezone.now()


def answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Answer:
    all_headers = {"Content-Type": JSON}
    all_headers.update(headers or {})
    return Answer(status, all_headers, json.dumps(body).encode())


def api_errors(status: int, *messages: str, headers: Mapping[str, str] | None = None) -> Answer:
    """Datadog's usual error shape: ``{"errors": ["..."]}``."""
    return answer(status, {"errors": list(messages)}, headers)


TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    408: "Request Timeout",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def logs_errors(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Answer:
    """The logs intake's shape: ``{"errors": [{"status", "title", "detail"}]}``."""
    error = {"status": str(status), "title": TITLES.get(status, "Error"), "detail": detail}
    return answer(status, {"errors": [error]}, headers)


def oauth_error(status: int, code: str, description: str) -> Answer:
    """OAuth errors as Datadog sends them: ``{"errors": ["invalid_grant - ..."]}``."""
    return api_errors(status, f"{code} - {description}", headers=NO_STORE)


NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def rate_limit_headers(reset: int, name: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Period": "60",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset),
        "X-RateLimit-Name": name,
    }
