"""``delivery.transmit``: one attempt's requests and what each answer means for its rows.

The verdicts are what the run records: delivered, retried (with Datadog's pause after a 429),
dead (with an alarm where the vendor must act), rejected (the key, confirmed by
``GET /api/v1/validate``), released (the lease ends before an answer could arrive) and held
(the site's breaker tripped). No database: these functions run in delivery threads.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from typing import Any

import pytest
import requests
import responses

from django_datadog_partner.delivery import transmit
from django_datadog_partner.delivery.transmit import Item, Result, Run, Target
from django_datadog_partner.payloads import SHRUNK_TITLE_LIMIT
from django_datadog_partner.regions import get_site

SITE = get_site("datadoghq.com")
EVENTS_URL = SITE.api_url + transmit.EVENTS_PATH
SERIES_URL = SITE.api_url + transmit.BATCHED["metric"].path
LOGS_URL = SITE.logs_url + transmit.BATCHED["log"].path
VALIDATE_URL = SITE.api_url + "/api/v1/validate"
KEY_A = "a" * 32
KEY_B = "b" * 32


def target(connection_id: int = 1, key: str = KEY_A) -> Target:
    return Target(connection_id, SITE, key)


def run() -> Run:
    return Run(send_by=float("inf"))


def answer(
    status: int, headers: dict[str, str] | None = None, body: bytes | None = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response._content = b'{"errors": ["Datadog says no"]}' if body is None else body
    return response


def sent_json(request: requests.PreparedRequest) -> Any:
    """The JSON a request carried, gunzipped if it says so."""
    body = request.body
    assert isinstance(body, bytes)
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body)


def sent_keys(mocked: responses.RequestsMock, url: str) -> list[str]:
    return [str(c.request.headers["DD-API-KEY"]) for c in mocked.calls if c.request.url == url]


# --- outcome(): every class of answer -------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_a_2xx_delivers_the_rows(status: int) -> None:
    result = transmit.outcome(answer(status, body=b"{}"), [7, 8], target(), run())
    assert (result.row_ids, result.verdict, result.code) == (
        [7, 8],
        transmit.DELIVERED,
        f"http_{status}",
    )
    assert not result.alarm and result.pause_for is None


@pytest.mark.parametrize("status", [400, 422, 413])
def test_a_body_datadog_will_never_accept_is_dead_without_an_alarm(status: int) -> None:
    result = transmit.outcome(answer(status), [1], target(), run())
    assert (result.verdict, result.code, result.alarm) == (transmit.DEAD, f"http_{status}", False)
    assert result.detail.startswith(f"HTTP {status}") and "Datadog says no" in result.detail


@pytest.mark.parametrize("status", [401, 404])
def test_a_refused_credential_or_unknown_endpoint_is_dead_and_raises_an_alarm(status: int) -> None:
    result = transmit.outcome(answer(status), [1], target(), run())
    assert (result.verdict, result.code, result.alarm) == (transmit.DEAD, f"http_{status}", True)


@pytest.mark.parametrize(
    ("validate", "verdict"),
    [
        ({"status": 403, "json": {"errors": ["Forbidden"]}}, transmit.REJECTED),
        ({"status": 200, "json": {"valid": False}}, transmit.REJECTED),
        ({"status": 200, "json": {"valid": True}}, transmit.RETRY),
        ({"status": 503, "json": {}}, transmit.RETRY),  # cannot tell now: not rejected
        ({"body": requests.ConnectionError("down")}, transmit.RETRY),
    ],
    ids=["validate-403", "validate-invalid", "validate-valid", "validate-503", "validate-down"],
)
def test_a_403_is_a_rejected_key_only_when_validate_says_so(
    mocked_http: responses.RequestsMock, validate: dict[str, Any], verdict: str
) -> None:
    mocked_http.get(VALIDATE_URL, **validate)
    result = transmit.outcome(answer(403), [1, 2], target(), run())
    assert (result.verdict, result.code, result.alarm) == (verdict, "http_403", False)
    assert sent_keys(mocked_http, VALIDATE_URL) == [KEY_A]


@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"X-RateLimit-Reset": "7"}, 7.0),
        ({"Retry-After": "12"}, 12.0),
        ({"X-RateLimit-Reset": "3", "Retry-After": "9"}, 9.0),  # the longer of the two
        ({}, None),  # unsaid: the recorder's default applies
    ],
)
def test_a_429_is_retried_after_the_pause_datadog_asks_for(
    headers: dict[str, str], pause: float | None
) -> None:
    result = transmit.outcome(answer(429, headers), [1], target(), run())
    assert (result.verdict, result.code, result.pause_for) == (transmit.RETRY, "http_429", pause)
    assert not result.alarm


@pytest.mark.parametrize("status", [408, 425, 500, 502, 503, 504])
def test_timeouts_and_server_errors_are_retried_without_a_pause(status: int) -> None:
    result = transmit.outcome(answer(status), [1], target(), run())
    assert (result.verdict, result.code, result.pause_for) == (
        transmit.RETRY,
        f"http_{status}",
        None,
    )
    assert not result.alarm


@pytest.mark.parametrize("status", [405, 409, 410, 418, 451])
def test_any_other_answer_is_dead_and_raises_an_alarm(status: int) -> None:
    result = transmit.outcome(answer(status), [1], target(), run())
    assert (result.verdict, result.code, result.alarm) == (transmit.DEAD, f"http_{status}", True)


def test_a_403_for_another_connection_asks_validate_again_but_never_twice_for_one(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.get(VALIDATE_URL, status=403)
    shared = run()
    for _ in range(3):
        assert (
            transmit.outcome(answer(403), [1], target(1, KEY_A), shared).verdict
            == transmit.REJECTED
        )
        assert (
            transmit.outcome(answer(403), [2], target(2, KEY_B), shared).verdict
            == transmit.REJECTED
        )
    assert sent_keys(mocked_http, VALIDATE_URL) == [KEY_A, KEY_B]
    assert transmit.outcome(answer(403), [1], target(1, KEY_A), run()).verdict == transmit.REJECTED
    assert len(sent_keys(mocked_http, VALIDATE_URL)) == 3  # a new run asks again


def test_result_says_whether_the_site_failed_or_answered() -> None:
    assert Result([1], transmit.RETRY, "network").site_fault
    assert Result([1], transmit.RETRY, "http_503").site_fault
    for code in ("http_202", "http_403", "http_429"):
        assert Result([1], transmit.RETRY, code).site_answered
        assert not Result([1], transmit.RETRY, code).site_fault
    for code in ("lease_ending", "breaker_open", "transport_refused"):
        result = Result([1], transmit.RETRY, code)
        assert not (result.site_fault or result.site_answered)


# --- The requests of one attempt --------------------------------------------------------------


def test_an_event_is_posted_with_the_key_and_its_outbox_id_line(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.post(EVENTS_URL, status=202, json={"status": "ok"})
    (result,) = transmit.send_event(target(), Item(5, "event", {"title": "t", "text": "x"}), run())
    assert (result.row_ids, result.verdict, result.new_payload) == ([5], transmit.DELIVERED, None)
    (call,) = mocked_http.calls
    assert call.request.headers["DD-API-KEY"] == KEY_A
    sent = sent_json(call.request)
    assert sent["text"].endswith("\n\noutbox_id:5")  # not a tag: Datadog forbids unbounded ones
    assert "outbox_id:5" not in sent.get("tags", [])


def test_a_too_large_event_is_shrunk_once_and_keeps_the_shrunk_payload(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.post(EVENTS_URL, status=413)
    mocked_http.post(EVENTS_URL, status=202)
    item = Item(5, "event", {"title": "T" * 500, "text": "x" * 5000, "tags": ["a"] * 50})
    (result,) = transmit.send_event(target(), item, run())
    assert result.verdict == transmit.DELIVERED
    first, second = (sent_json(c.request) for c in mocked_http.calls)
    assert len(first["title"]) == 500
    assert len(second["title"]) == SHRUNK_TITLE_LIMIT and len(second["tags"]) == 20
    assert result.new_payload is not None and len(result.new_payload["title"]) == SHRUNK_TITLE_LIMIT


def test_an_event_too_large_even_when_shrunk_is_dead_after_two_requests(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.post(EVENTS_URL, status=413)
    (result,) = transmit.send_event(target(), Item(5, "event", {"title": "T" * 500}), run())
    assert (result.verdict, result.code) == (transmit.DEAD, "http_413")
    assert result.detail == "Too large for Datadog even when shrunk."
    assert len(mocked_http.calls) == 2


def test_an_event_refused_otherwise_is_not_shrunk(mocked_http: responses.RequestsMock) -> None:
    mocked_http.post(EVENTS_URL, status=400)
    (result,) = transmit.send_event(target(), Item(5, "event", {"title": "T" * 500}), run())
    assert (result.verdict, result.new_payload, len(mocked_http.calls)) == (transmit.DEAD, None, 1)


def logs_of(request: requests.PreparedRequest) -> list[dict[str, Any]]:
    assert request.headers["Content-Encoding"] == "gzip"
    return list(sent_json(request))


def log_items(*messages: str) -> list[Item]:
    return [Item(n, "log", {"message": m}) for n, m in enumerate(messages, start=1)]


def parts(items: list[Item]) -> list[transmit.Part]:
    """What the run hands ``send_batch``: each row's id and its item as sent."""
    return [(item.row_id, item.body()) for item in items]


def test_a_rejected_batch_is_bisected_until_the_bad_items_are_alone(
    mocked_http: responses.RequestsMock,
) -> None:
    def intake(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        refused = any(log["message"] == "bad" for log in logs_of(request))
        return (400 if refused else 202), {}, "{}"

    mocked_http.add_callback("POST", LOGS_URL, callback=intake)
    items = log_items("ok", "ok", "bad", "ok", "ok", "ok")
    results = transmit.send_batch(target(), "log", parts(items), run())
    dead = [row for r in results if r.verdict == transmit.DEAD for row in r.row_ids]
    assert dead == [3]
    sent = [[log["message"] for log in logs_of(c.request)] for c in mocked_http.calls]
    # [1..6] -> [1..3] -> [1] ok, [2..3] -> [2] ok, [3] dead; [4..6] ok
    assert [len(batch) for batch in sent] == [6, 3, 1, 2, 1, 1, 3]
    delivered = [row for r in results if r.verdict == transmit.DELIVERED for row in r.row_ids]
    assert sorted(delivered) == [1, 2, 4, 5, 6]  # each row once


def test_a_too_large_batch_is_split_until_each_part_fits(
    mocked_http: responses.RequestsMock,
) -> None:
    def intake(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        return (413 if len(sent_json(request)["series"]) > 2 else 202), {}, "{}"

    mocked_http.add_callback("POST", SERIES_URL, callback=intake)
    items = [Item(n, "metric", {"metric": f"m{n}", "points": []}) for n in range(1, 6)]
    results = transmit.send_batch(target(), "metric", parts(items), run())
    assert [(r.row_ids, r.verdict) for r in results] == [
        ([1, 2], transmit.DELIVERED), ([3], transmit.DELIVERED), ([4, 5], transmit.DELIVERED),
    ]  # fmt: skip
    assert len(mocked_http.calls) == 5  # [1..5], [1,2], [3..5], [3], [4,5]


def test_a_single_item_too_large_is_dead_not_split_forever(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.post(LOGS_URL, status=413)
    (result,) = transmit.send_batch(target(), "log", parts(log_items("huge")), run())
    assert (result.verdict, result.code, len(mocked_http.calls)) == (transmit.DEAD, "http_413", 1)


def test_a_batch_that_failed_for_another_reason_is_retried_whole(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.post(LOGS_URL, status=503)
    (result,) = transmit.send_batch(target(), "log", parts(log_items("a", "b", "c")), run())
    assert (result.row_ids, result.verdict, len(mocked_http.calls)) == (
        [1, 2, 3],
        transmit.RETRY,
        1,
    )


def test_a_network_failure_is_retried_and_a_redirect_is_dead_with_an_alarm(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.post(EVENTS_URL, body=requests.ConnectionError("refused"))
    (result,) = transmit.send_event(target(), Item(1, "event", {}), run())
    assert (result.verdict, result.code, result.alarm) == (transmit.RETRY, "network", False)
    mocked_http.replace("POST", EVENTS_URL, status=302, headers={"Location": "https://elsewhere"})
    (result,) = transmit.send_event(target(), Item(1, "event", {}), run())
    assert (result.verdict, result.code, result.alarm) == (transmit.DEAD, "transport_refused", True)


# --- What the run decides before a request ----------------------------------------------------


def test_nothing_is_sent_once_the_lease_is_too_close_to_its_end(
    mocked_http: responses.RequestsMock,
) -> None:
    late = Run(send_by=time.monotonic() - 0.001)
    assert late.too_late() and not Run(send_by=time.monotonic() + 60).too_late()
    (event,) = transmit.send_event(target(), Item(1, "event", {}), late)
    (logs,) = transmit.send_batch(target(), "log", parts(log_items("a", "b")), late)
    assert (event.verdict, event.code) == (transmit.RELEASED, "lease_ending")
    assert (logs.row_ids, logs.verdict) == ([1, 2], transmit.RELEASED)
    assert len(mocked_http.calls) == 0


def test_a_site_that_keeps_failing_trips_its_breaker_and_the_rest_is_held(
    mocked_http: responses.RequestsMock, partner_settings: Any
) -> None:
    partner_settings(BREAKER_THRESHOLD=3)
    mocked_http.post(EVENTS_URL, status=503)
    shared = run()
    verdicts = [
        transmit.send_event(target(), Item(n, "event", {}), shared)[0].verdict for n in range(5)
    ]
    assert verdicts == [transmit.RETRY] * 3 + [transmit.HELD] * 2
    assert len(mocked_http.calls) == 3
    (held,) = transmit.send_batch(target(), "log", parts(log_items("a")), shared)
    assert (held.verdict, held.code) == (transmit.HELD, "breaker_open")


# --- One validate per connection, and only that connection waits for it ---------------------


def test_a_connection_whose_key_changed_during_the_run_has_its_new_key_validated(
    mocked_http: responses.RequestsMock,
) -> None:
    """A run outlives its first claim (rows join it): a connection's key may be replaced
    meanwhile, and the old key's refusal must not mark the new one refused."""
    valid = {KEY_A: False, KEY_B: True}

    def validate(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        return (
            (200, {}, '{"valid": true}')
            if valid[request.headers["DD-API-KEY"]]
            else (403, {}, '{"errors": ["Forbidden"]}')
        )

    mocked_http.add_callback("GET", VALIDATE_URL, callback=validate)
    shared = run()
    assert shared.is_rejected(target(1, KEY_A)) is True
    assert shared.is_rejected(target(1, KEY_B)) is False  # the new key, asked for itself
    assert shared.is_rejected(target(1, KEY_A)) is True
    assert len([c for c in mocked_http.calls if c.request.url == VALIDATE_URL]) == 2


def test_a_slow_validate_for_one_connection_never_stalls_another(
    mocked_http: responses.RequestsMock,
) -> None:
    a_validating, release_a = threading.Event(), threading.Event()

    def validate(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        if request.headers["DD-API-KEY"] == KEY_A:
            a_validating.set()
            release_a.wait(timeout=10)
        return 403, {}, "{}"

    mocked_http.add_callback("GET", VALIDATE_URL, callback=validate)
    mocked_http.post(EVENTS_URL, status=202)
    shared = run()
    verdicts: dict[str, list[bool | None]] = {"a": [], "b": []}

    def ask(name: str, connection: Target) -> None:
        verdicts[name].append(shared.is_rejected(connection))

    a_threads = [threading.Thread(target=ask, args=("a", target(1, KEY_A))) for _ in range(2)]
    b_thread = threading.Thread(target=ask, args=("b", target(2, KEY_B)))
    try:
        for thread in a_threads:
            thread.start()
        assert a_validating.wait(timeout=10)
        b_thread.start()
        b_thread.join(timeout=5)
        assert not b_thread.is_alive(), "B waited for A's validate"
        (sent,) = transmit.send_event(target(2, KEY_B), Item(9, "event", {}), shared)
        assert sent.verdict == transmit.DELIVERED
        assert verdicts == {"a": [], "b": [True]}  # A's two threads still wait for the answer
    finally:
        release_a.set()
        for thread in [*a_threads, b_thread]:
            thread.join(timeout=10)
    assert verdicts == {"a": [True, True], "b": [True]}
    assert sorted(sent_keys(mocked_http, VALIDATE_URL)) == [KEY_A, KEY_B]  # A asked once


def test_a_targets_repr_never_shows_the_api_key() -> None:
    key = "ak-canary-" + "f" * 22
    shown = Target(3, SITE, key, key_fingerprint="fp")
    assert key not in repr(shown) and key not in str(shown)
    assert "connection_id=3" in repr(shown) and "fp" in repr(shown)
