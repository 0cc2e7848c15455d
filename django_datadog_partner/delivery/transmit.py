"""Sending outbox items to Datadog's intake and classifying the answers.

No ORM here: these functions run in delivery threads and return ``Result`` values that
the run records (``outcomes.Recorder``). Intake is authenticated by ``DD-API-KEY`` only.
Events go one per request; logs and metric series (gzip) and service checks go in batches
packed to Datadog's limits (``packing.pack``). Each attempt is exactly one request, except
where the classification calls for more: a rejected batch is bisected to find the bad
items, a too-large one is split, a too-large event is shrunk once, and a 403 is followed by
one ``GET /api/v1/validate``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import packing, payloads
from ..client import DatadogClient, Verdict, classify
from ..exceptions import (
    DatadogPartnerError,
    TransportRefusedError,
    datadog_error_messages,
    describe_response,
)
from ..regions import Site
from .breaker import SiteBreakers

EVENTS_PATH = "/api/v1/events"
#: A 2xx whose body still lists errors (a series 202 may): delivered, the errors recorded.
ACCEPTED_WITH_ERRORS = "accepted_with_errors"


@dataclass(frozen=True)
class Batching:
    """Where a batched kind goes (the logs intake host or the API host) and how it packs."""

    path: str
    limits: packing.BatchLimits
    logs_host: bool = False

    def url(self, client: DatadogClient) -> str:
        return client.logs_url(self.path) if self.logs_host else client.api_url(self.path)


#: The batched kinds, by ``OutboxKind`` value.
BATCHED: dict[str, Batching] = {
    "log": Batching("/api/v2/logs", packing.LOGS_BATCH, logs_host=True),
    "metric": Batching("/api/v2/series", packing.SERIES_BATCH),
    "check": Batching("/api/v1/check_run", packing.CHECKS_BATCH),
}

# Verdicts
DELIVERED = "delivered"
RETRY = "retry"
DEAD = "dead"
REJECTED = "rejected"  # Datadog refuses the API key: park the connection's rows
RELEASED = "released"  # not sent: the lease is nearly over; the rows are due again at once
HELD = "held"  # not sent: the site's breaker tripped during this run; the rows wait


@dataclass(frozen=True)
class Target:
    """One connection's destination. ``repr`` never shows the key."""

    connection_id: int
    site: Site
    api_key: str = field(repr=False)
    key_fingerprint: str = ""


@dataclass(frozen=True)
class Item:
    row_id: int
    kind: str
    payload: Mapping[str, Any]

    def body(self) -> bytes:
        return payloads.encode(payloads.as_sent(self.kind, self.payload, self.row_id))


Job = Callable[["Run"], list["Result"]]


@dataclass
class Result:
    """What happened to some rows in one attempt."""

    row_ids: list[int]
    verdict: str
    code: str = ""
    detail: str = ""
    pause_for: float | None = None
    alarm: bool = False
    new_payload: dict[str, Any] | None = None

    @property
    def site_fault(self) -> bool:
        """The site gave no useful answer (network error, 5xx): counts toward its breaker."""
        return self.code == "network" or self.code.startswith("http_5")

    @property
    def site_answered(self) -> bool:
        """Any other HTTP answer, a refusal included, shows the site is up."""
        return self.code.startswith("http_") and not self.site_fault


class Run:
    """What the sends of one claimed batch share: the time after which no request may
    start (the batch's lease would end before the answer), the sites' breakers, and
    ``GET /api/v1/validate`` made at most once per connection."""

    def __init__(self, send_by: float, breakers: SiteBreakers | None = None) -> None:
        self.send_by = send_by
        self.breakers = breakers if breakers is not None else SiteBreakers((), timezone.now())
        self._lock = threading.Lock()
        self._key_locks: dict[int, threading.Lock] = {}
        self._known: dict[int, bool | None] = {}

    def too_late(self) -> bool:
        return time.monotonic() >= self.send_by

    def is_rejected(self, target: Target) -> bool | None:
        """Whether Datadog refuses the connection's key, asked once per connection. Only
        that connection's lock is held across the request: other threads keep sending."""
        with self._lock:
            key_lock = self._key_locks.setdefault(target.connection_id, threading.Lock())
        with key_lock:
            if target.connection_id not in self._known:
                valid = DatadogClient(target.site).validate_api_key(target.api_key)
                self._known[target.connection_id] = None if valid is None else not valid
            return self._known[target.connection_id]


def send_event(target: Target, item: Item, run: Run) -> list[Result]:
    url = DatadogClient(target.site).api_url(EVENTS_PATH)
    results = _attempt(target, url, item.body(), [item.row_id], run, gzipped=False)
    if results[0].code != "http_413":
        return results
    shrunk = payloads.shrink_event(item.payload)
    retried = _attempt(
        target, url, Item(item.row_id, item.kind, shrunk).body(), [item.row_id], run,
        gzipped=False,
    )  # fmt: skip
    for result in retried:
        result.new_payload = shrunk
        if result.code == "http_413":
            result.verdict, result.detail = DEAD, "Too large for Datadog even when shrunk."
    return retried


Part = tuple[int, bytes]  # (outbox row id, the item encoded as sent)


def send_batch(
    target: Target, kind: str, parts: Sequence[Part], run: Run, *, body: bytes | None = None
) -> list[Result]:
    """Send logs, metric series or service checks (``body``: already packed); bisect on
    400/422 and split on 413."""
    batching = BATCHED[kind]
    url = batching.url(DatadogClient(target.site))
    return _send_split(target, url, batching.limits, list(parts), run, body)


def _send_split(
    target: Target,
    url: str,
    limits: packing.BatchLimits,
    parts: list[Part],
    run: Run,
    body: bytes | None = None,
) -> list[Result]:
    if body is None:  # a half of a refused batch: packed again (into one body, as a rule)
        return [
            result
            for group in packing.pack([part for _, part in parts], limits)
            for result in _send_split(
                target, url, limits, [parts[i] for i in group.indexes], run, group.body
            )
        ]
    ids = [row_id for row_id, _ in parts]
    results = _attempt(target, url, body, ids, run, gzipped=limits.gzip)
    splittable = results[0].code in ("http_400", "http_422", "http_413")
    if not splittable or len(parts) == 1:
        return results
    middle = len(parts) // 2
    return [
        *_send_split(target, url, limits, parts[:middle], run),
        *_send_split(target, url, limits, parts[middle:], run),
    ]


@sensitive_variables()
def _attempt(
    target: Target, url: str, body: bytes, ids: list[int], run: Run, *, gzipped: bool
) -> list[Result]:
    if run.too_late():
        return [Result(ids, RELEASED, "lease_ending")]
    if run.breakers.tripped(target.site.domain, target.connection_id):
        return [Result(ids, HELD, "breaker_open")]
    headers = {"DD-API-KEY": target.api_key, "Content-Type": "application/json"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    client = DatadogClient(target.site)
    try:
        response = client.request("POST", url, headers=headers, data=body)
    except TransportRefusedError as exc:
        return [Result(ids, DEAD, "transport_refused", str(exc), alarm=True)]
    except DatadogPartnerError as exc:
        result = Result(ids, RETRY, "network", str(exc))
    else:
        result = outcome(response, ids, target, run)
    run.breakers.note(target.site.domain, target.connection_id, result)
    return [result]


def outcome(response: requests.Response, ids: list[int], target: Target, run: Run) -> Result:
    """What one answer from Datadog's intake means for the rows it carried."""
    answer = classify(response)
    code = answer.code
    if answer.verdict is Verdict.SUCCESS:
        errors = datadog_error_messages(response)
        if errors:
            return Result(ids, DELIVERED, ACCEPTED_WITH_ERRORS, "; ".join(errors))
        return Result(ids, DELIVERED, code)
    detail = describe_response(response)
    if answer.verdict in (Verdict.INVALID, Verdict.TOO_LARGE):
        return Result(ids, DEAD, code, detail)  # a batch is split or bisected by the caller
    if answer.verdict in (Verdict.UNAUTHORIZED, Verdict.NOT_FOUND):
        return Result(ids, DEAD, code, detail, alarm=True)
    if answer.verdict is Verdict.FORBIDDEN:
        if run.is_rejected(target):
            return Result(ids, REJECTED, code, detail)
        return Result(ids, RETRY, code, detail)
    if answer.retryable:
        return Result(ids, RETRY, code, detail, pause_for=answer.pause_for)
    return Result(ids, DEAD, code, detail, alarm=True)
