"""Helpers for the telemetry tests: connections with known keys, and a recording intake."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import responses

from django_datadog_partner.models import Connection, OutboxEvent
from django_datadog_partner.regions import get_site
from django_datadog_partner.testing import make_connection

PATHS = {
    "event": "/api/v1/events",
    "series": "/api/v2/series",
    "logs": "/api/v2/logs",
    "checks": "/api/v1/check_run",
}
MARK = re.compile(r"\n\noutbox_id:(\d+)(?:\n %%%)?$")


def outbox_id_in(kind: str, item: dict[str, Any]) -> int | None:
    """The outbox id an item carries as Datadog received it: an event's last text line, a
    log entry's ``outbox_id`` attribute; None for metric points and service checks."""
    if kind == "event":
        found = MARK.search(item.get("text", ""))
        return int(found.group(1)) if found else None
    if kind == "logs":
        return item.get("outbox_id")
    return None


def key_of(conn: Connection) -> str:
    assert conn.api_key is not None
    return conn.api_key.reveal()


@dataclass
class Arrival:
    """One request that reached the fake intake."""

    kind: str
    domain: str
    api_key: str
    body: Any
    request: requests.PreparedRequest

    def items(self) -> list[dict[str, Any]]:
        if self.kind == "event":
            return [self.body]
        if self.kind == "series":
            return list(self.body["series"])
        return list(self.body)

    def outbox_ids(self) -> list[int]:
        found = (outbox_id_in(self.kind, item) for item in self.items())
        return [outbox_id for outbox_id in found if outbox_id is not None]


Responder = Callable[[Arrival], "tuple[int, dict[str, str], str] | int"]


@dataclass
class Intake:
    """A ``responses`` intake on every site listed: records arrivals; ``respond`` decides."""

    mocked: responses.RequestsMock
    domains: tuple[str, ...] = ("datadoghq.com",)
    respond: Responder = lambda arrival: 202
    validate_status: int = 200
    arrivals: list[Arrival] = field(default_factory=list)
    validations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for domain in self.domains:
            site = get_site(domain)
            for kind, path in PATHS.items():
                base = site.logs_url if kind == "logs" else site.api_url
                self.mocked.add_callback(
                    responses.POST, base + path, callback=self._callback(kind, domain)
                )
            self.mocked.add_callback(
                responses.GET, site.api_url + "/api/v1/validate", callback=self._validate
            )

    def _callback(self, kind: str, domain: str) -> Any:
        def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            raw = request.body if isinstance(request.body, bytes) else str(request.body).encode()
            if request.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            arrival = Arrival(kind, domain, request.headers.get("DD-API-KEY", ""),
                              json.loads(raw), request)  # fmt: skip
            self.arrivals.append(arrival)
            result = self.respond(arrival)
            if isinstance(result, int):
                return result, {}, "{}" if result < 300 else '{"errors": ["nope"]}'
            return result

        return answer

    def _validate(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.validations.append(request.headers.get("DD-API-KEY", ""))
        if self.validate_status == 200:
            return 200, {}, '{"valid": true}'
        return self.validate_status, {}, '{"errors": ["Forbidden"]}'

    def delivered_ids(self) -> list[int]:
        return [i for arrival in self.arrivals for i in arrival.outbox_ids()]


def statuses() -> dict[int, str]:
    return dict(OutboxEvent.objects.values_list("pk", "status"))


@pytest.fixture
def conn(org: Any) -> Connection:
    """An active connection of ``org`` on US1, with a random API key (``key_of(conn)``)."""
    return make_connection(org)


@pytest.fixture
def intake(mocked_http: responses.RequestsMock) -> Intake:
    """Datadog's intake on US1, EU1 and US5, recording what arrives."""
    return Intake(mocked_http, domains=("datadoghq.com", "datadoghq.eu", "us5.datadoghq.com"))
