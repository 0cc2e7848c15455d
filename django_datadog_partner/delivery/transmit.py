"""Sending outbox items to Datadog's intake and classifying the answers.

No ORM here: jobs (``EventJob``, ``BatchJob``) run on a multiplexer (their first request)
or on delivery threads, and return ``Result`` values that the run records
(``outcomes.Recorder``). Intake is authenticated by ``DD-API-KEY`` only.
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
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import packing, payloads
from ..client import Call, DatadogClient, Verdict, classify
from ..crypto import fingerprint
from ..exceptions import (
    DatadogPartnerError,
    OutOfDescriptorsError,
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
HELD = "held"  # not sent: the site's breaker tripped, or no descriptor was left; rows wait


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
    ``GET /api/v1/validate`` made at most once per connection and key (rows that join the
    batch later may carry a connection's new key)."""

    def __init__(self, send_by: float, breakers: SiteBreakers | None = None) -> None:
        self.send_by = send_by
        self.breakers = breakers if breakers is not None else SiteBreakers((), timezone.now())
        self._lock = threading.Lock()
        self._key_locks: dict[int, threading.Lock] = {}
        self._known: dict[tuple[int, str], bool | None] = {}  # by (connection, key's fingerprint)

    def too_late(self) -> bool:
        return time.monotonic() >= self.send_by

    def is_rejected(self, target: Target) -> bool | None:
        """Whether Datadog refuses the connection's key, asked once per connection and key.
        Only that connection's lock is held across the request: other threads keep sending."""
        known = (target.connection_id, fingerprint(target.api_key))
        with self._lock:
            key_lock = self._key_locks.setdefault(target.connection_id, threading.Lock())
        with key_lock:
            if known not in self._known:
                valid = DatadogClient(target.site).validate_api_key(target.api_key)
                self._known[known] = None if valid is None else not valid
            return self._known[known]


@dataclass(frozen=True)
class Attempt:
    """One request of a job, and what its answer means for the rows it carries."""

    target: Target
    url: str
    body: bytes = field(repr=False)
    ids: list[int]
    gzipped: bool

    def skipped(self, run: Run) -> Result | None:
        """The rows' result when the request must not start (lease ending, breaker open)."""
        if run.too_late():
            return Result(self.ids, RELEASED, "lease_ending")
        if run.breakers.tripped(self.target.site.domain, self.target.connection_id):
            return Result(self.ids, HELD, "breaker_open")
        return None

    @sensitive_variables()
    def headers(self) -> dict[str, str]:
        headers = {"DD-API-KEY": self.target.api_key, "Content-Type": "application/json"}
        if self.gzipped:
            headers["Content-Encoding"] = "gzip"
        return headers

    def call(self) -> Call:
        """The request, to be made on a multiplexer (raises the seam's errors)."""
        return Call("POST", self.url, headers=self.headers(), data=self.body)

    def perform(self, run: Run) -> Result:
        """The request made on this thread, and its result."""
        skipped = self.skipped(run)
        if skipped is not None:
            return skipped
        try:
            response = DatadogClient(self.target.site).request(
                "POST", self.url, headers=self.headers(), data=self.body
            )
        except DatadogPartnerError as exc:
            return self.concluded(run, error=exc)
        return self.concluded(run, response)

    def concluded(
        self,
        run: Run,
        response: requests.Response | None = None,
        error: DatadogPartnerError | None = None,
    ) -> Result:
        """The result of the answer (or of the error instead of one), noted by the
        site's breaker."""
        if isinstance(error, TransportRefusedError):
            return Result(self.ids, DEAD, "transport_refused", str(error), alarm=True)
        if isinstance(error, OutOfDescriptorsError):  # this process's limit, not the site
            result = Result(self.ids, HELD, "no_descriptors", str(error))
        elif error is not None:
            result = Result(self.ids, RETRY, "network", str(error))
        else:
            assert response is not None
            result = outcome(response, self.ids, self.target, run)
        run.breakers.note(self.target.site.domain, self.target.connection_id, result)
        return result


@dataclass(frozen=True)
class EventJob:
    """One event: one request, and one more with the event shrunk after a 413."""

    target: Target
    item: Item

    def __call__(self, run: Run) -> list[Result]:
        return self.then(self.first().perform(run), run)

    def first(self) -> Attempt:
        url = DatadogClient(self.target.site).api_url(EVENTS_PATH)
        return Attempt(self.target, url, self.item.body(), [self.item.row_id], False)

    def follows(self, result: Result) -> bool:
        """Whether ``result`` of the first request calls for more requests."""
        return result.code == "http_413"

    def then(self, result: Result, run: Run) -> list[Result]:
        """The job's results, given its first request's."""
        if not self.follows(result):
            return [result]
        shrunk = payloads.shrink_event(self.item.payload)
        body = Item(self.item.row_id, self.item.kind, shrunk).body()
        retried = replace(self.first(), body=body).perform(run)
        retried.new_payload = shrunk
        if retried.code == "http_413":
            retried.verdict, retried.detail = DEAD, "Too large for Datadog even when shrunk."
        return [retried]


def send_event(target: Target, item: Item, run: Run) -> list[Result]:
    return EventJob(target, item)(run)


Part = tuple[int, bytes]  # (outbox row id, the item encoded as sent)


@dataclass(frozen=True)
class BatchJob:
    """One packed body of a batched kind; bisected on 400/422 and split on 413."""

    target: Target
    kind: str
    parts: list[Part]
    body: bytes = field(repr=False)

    def __call__(self, run: Run) -> list[Result]:
        return self.then(self.first().perform(run), run)

    def first(self) -> Attempt:
        batching = BATCHED[self.kind]
        url = batching.url(DatadogClient(self.target.site))
        ids = [row_id for row_id, _ in self.parts]
        return Attempt(self.target, url, self.body, ids, batching.limits.gzip)

    def follows(self, result: Result) -> bool:
        splittable = result.code in ("http_400", "http_422", "http_413")
        return splittable and len(self.parts) > 1

    def then(self, result: Result, run: Run) -> list[Result]:
        if not self.follows(result):
            return [result]
        middle = len(self.parts) // 2
        return [
            *self._repacked(self.parts[:middle], run),
            *self._repacked(self.parts[middle:], run),
        ]

    def _repacked(self, parts: list[Part], run: Run) -> list[Result]:
        """A half of a refused batch, packed again (into one body, as a rule)."""
        limits = BATCHED[self.kind].limits
        return [
            result
            for group in packing.pack([part for _, part in parts], limits)
            for result in BatchJob(
                self.target, self.kind, [parts[i] for i in group.indexes], group.body
            )(run)
        ]


def send_batch(
    target: Target, kind: str, parts: Sequence[Part], run: Run, *, body: bytes | None = None
) -> list[Result]:
    """Send logs, metric series or service checks (``body``: already packed); bisect on
    400/422 and split on 413."""
    if body is None:
        return BatchJob(target, kind, [], b"")._repacked(list(parts), run)
    return BatchJob(target, kind, list(parts), body)(run)


Job = Callable[["Run"], list["Result"]]
#: A job whose first request a multiplexer can make (``pacing``); the rest, if its answer
#: calls for more, runs on a thread.
LoopJob = EventJob | BatchJob
LOOP_JOBS = (EventJob, BatchJob)


def answered(
    job: LoopJob,
    attempt: Attempt,
    run: Run,
    response: requests.Response | None = None,
    error: DatadogPartnerError | None = None,
) -> list[Result] | Job:
    """The job's results from its first request's answer, or what is left of the job when
    that needs more requests (a shrink, a split, the key's validation after a 403): to be
    run on a thread, since it waits for them."""
    if response is not None and classify(response).verdict is Verdict.FORBIDDEN:
        return lambda run: job.then(attempt.concluded(run, response), run)
    result = attempt.concluded(run, response, error)
    if not job.follows(result):
        return [result]
    return lambda run: job.then(result, run)


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
