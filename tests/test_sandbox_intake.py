"""The fake Datadog's intake: keys, bodies, encodings, status codes, error shapes, faults."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from typing import Any

import pytest

from django_datadog_partner.sandbox.control import Sandbox
from django_datadog_partner.sandbox.engine import handle
from django_datadog_partner.sandbox.memory import MemoryStore
from django_datadog_partner.sandbox.protocol import Answer
from django_datadog_partner.sandbox.state import Org, Store
from django_datadog_partner.sandbox.store import OrmStore


class Fake:
    def __init__(self, store: Store | None = None) -> None:
        self.sandbox = Sandbox(store or MemoryStore(), domain="sandbox.localhost")
        self.org = self.sandbox.create_org("Acme")
        self.key = self.sandbox.create_api_key(self.org)
        self.slept: list[float] = []

    def send(
        self,
        path: str,
        body: Any = None,
        *,
        method: str = "POST",
        key: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Answer:
        all_headers = {"Content-Type": "application/json"}
        if key is None:
            key = self.key
        if key:
            all_headers["DD-API-KEY"] = key
        all_headers.update(headers or {})
        data = raw if raw is not None else json.dumps(body).encode()
        return handle(
            method,
            path,
            all_headers,
            data if method == "POST" else b"",
            query or {},
            store=self.sandbox.store,
            domain="sandbox.localhost",
            sleep=self.slept.append,
        )


@pytest.fixture
def fake() -> Fake:
    return Fake()


EVENT = {"title": "Order 1 updated", "text": "status: paid", "tags": ["model:order"]}


def series(ts: int | None = None) -> dict[str, Any]:
    point = {"timestamp": ts or int(time.time()), "value": 1.5}
    return {"series": [{"metric": "shop.payments", "type": 1, "points": [point]}]}


def test_validate_answers_200_for_the_key_and_403_after_it_is_revoked(fake: Fake) -> None:
    assert fake.send("/api/v1/validate", method="GET").json() == {"valid": True}
    fake.sandbox.revoke_api_key(fake.org)
    answer = fake.send("/api/v1/validate", method="GET")
    assert (answer.status, answer.json()) == (403, {"errors": ["Forbidden"]})
    assert fake.send("/api/v1/events", EVENT).status == 403


def test_event_is_recorded_and_answered_like_datadog(fake: Fake) -> None:
    answer = fake.send("/api/v1/events", EVENT)
    assert answer.status == 202
    body = answer.json()
    assert body["status"] == "ok"
    assert body["event"]["title"] == EVENT["title"]
    assert body["event"]["url"] == f"/event/event?id={body['event']['id']}"
    assert fake.sandbox.events(fake.org) == [EVENT]


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"text": "x"}, "event.title is required"),
        ({"title": "x"}, "event.text is required"),
        ({"title": "x", "text": "y", "tags": "a,b"}, "event.tags must be a list of strings"),
        ({"title": "x", "text": "y", "date_happened": "1"}, "event.date_happened must be int"),
        ({"title": "x", "text": "y", "aggregation_key": "k" * 101}, "longer than 100"),
        ({"title": "x", "text": "y", "alert_type": "fatal"}, "event.alert_type is not one of"),
        ([EVENT], "the event must be a JSON object"),
    ],
)
def test_invalid_events_get_400_with_datadog_error_list(
    fake: Fake, event: Any, problem: str
) -> None:
    answer = fake.send("/api/v1/events", event)
    assert answer.status == 400
    assert any(problem in message for message in answer.json()["errors"])
    assert fake.sandbox.events() == []


def test_event_text_over_4000_is_truncated_as_datadog_does(fake: Fake) -> None:
    answer = fake.send("/api/v1/events", {"title": "t", "text": "x" * 4500})
    assert answer.status == 202
    assert len(fake.sandbox.events()[0]["text"]) == 4000


def test_missing_key_and_unknown_key_answer_datadog_shapes(fake: Fake) -> None:
    assert fake.send("/api/v1/events", EVENT, key="").json() == {"errors": ["Forbidden"]}
    assert fake.send("/api/v2/series", series(), key="f" * 32).status == 403
    missing = fake.send("/api/v2/logs", [{"message": "hi"}], key="")
    assert missing.status == 401
    assert missing.json() == {
        "errors": [{"status": "401", "title": "Unauthorized", "detail": "API key is missing"}]
    }
    assert fake.send("/api/v2/logs", [{"message": "hi"}], key="nope").status == 403


def test_series_accepted_and_flattened(fake: Fake) -> None:
    answer = fake.send("/api/v2/series", series())
    assert (answer.status, answer.json()) == (202, {"errors": []})
    assert fake.sandbox.series(fake.org)[0]["metric"] == "shop.payments"


def test_series_points_out_of_range_are_reported_but_accepted(fake: Fake) -> None:
    answer = fake.send("/api/v2/series", series(ts=int(time.time()) - 7200))
    assert answer.status == 202
    assert "out of range" in answer.json()["errors"][0]


@pytest.mark.parametrize(
    "payload",
    [
        {"series": [{"metric": "m"}]},
        {"series": [{"metric": "m", "points": [{"timestamp": "1", "value": 1}]}]},
        {"series": [{"metric": "m", "points": [{"timestamp": 1, "value": True}]}]},
        {"series": [{"metric": "m", "points": [], "type": 7}]},
        {"metrics": []},
    ],
)
def test_invalid_series_get_400(fake: Fake, payload: Any) -> None:
    assert fake.send("/api/v2/series", payload).status == 400


def test_series_over_512000_bytes_is_413(fake: Fake) -> None:
    body = series()
    body["series"][0]["tags"] = ["t" * 100] * 6000
    assert fake.send("/api/v2/series", body).status == 413


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw"])
def test_logs_accept_compressed_bodies(fake: Fake, encoding: str) -> None:
    data = json.dumps([{"message": "paid", "service": "shop"}, {"message": "two"}]).encode()
    if encoding == "gzip":
        raw = gzip.compress(data)
    elif encoding == "deflate":
        raw = zlib.compress(data)
    else:
        compressor = zlib.compressobj(wbits=-15)
        raw = compressor.compress(data) + compressor.flush()
    header = encoding.split("-")[0]
    answer = fake.send("/api/v2/logs", raw=raw, headers={"Content-Encoding": header})
    assert (answer.status, answer.json()) == (202, {})
    assert [e["message"] for e in fake.sandbox.logs(fake.org)] == ["paid", "two"]


def test_corrupt_or_unknown_encoding_is_400(fake: Fake) -> None:
    corrupt = fake.send("/api/v2/logs", raw=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert corrupt.status == 400
    assert corrupt.json()["errors"][0]["detail"] == "Malformed gzip body"
    zstd = fake.send("/api/v2/series", raw=b"x", headers={"Content-Encoding": "zstd1"})
    assert zstd.status == 400


def test_logs_limits_and_validation(fake: Fake) -> None:
    assert fake.send("/api/v2/logs", [{"message": "x"}] * 1001).status == 413
    bad = fake.send("/api/v2/logs", [{"msg": "x"}])
    assert bad.status == 400
    assert "message is required" in bad.json()["errors"][0]["detail"]
    single = fake.send("/api/v2/logs", {"message": "one object"})
    assert single.status == 202


def test_logs_over_one_megabyte_are_truncated_and_accepted(fake: Fake) -> None:
    answer = fake.send("/api/v2/logs", [{"message": "é" * 700_000}, {"message": "short"}])
    assert answer.status == 202
    long, short = fake.sandbox.logs(fake.org)
    assert len(long["message"].encode()) <= 1_000_000 and short["message"] == "short"


def test_plain_text_logs_take_attributes_from_the_query(fake: Fake) -> None:
    answer = fake.send(
        "/api/v2/logs",
        raw=b"line one\nline two\n",
        headers={"Content-Type": "text/plain"},
        query={"ddsource": "shop", "service": "web"},
    )
    assert answer.status == 202
    assert fake.sandbox.logs() == [
        {"message": "line one", "ddsource": "shop", "service": "web"},
        {"message": "line two", "ddsource": "shop", "service": "web"},
    ]


@pytest.mark.parametrize("raw", [b"{nope", b"[" * 100_000], ids=["malformed", "deeply nested"])
def test_invalid_json_is_400(fake: Fake, raw: bytes) -> None:
    assert fake.send("/api/v1/events", raw=raw).json() == {"errors": ["Invalid JSON payload"]}


def test_429_fault_carries_rate_limit_headers_and_recovers_after_times(fake: Fake) -> None:
    fake.sandbox.set_faults(fake.org, intake="429", times=2, rate_limit_reset=7)
    first = fake.send("/api/v1/events", EVENT)
    assert first.status == 429
    assert first.headers["X-RateLimit-Reset"] == "7"
    assert first.headers["X-RateLimit-Remaining"] == "0"
    assert {"X-RateLimit-Limit", "X-RateLimit-Period", "X-RateLimit-Name"} <= set(first.headers)
    assert fake.send("/api/v2/logs", [{"message": "x"}]).json()["errors"][0]["status"] == "429"
    assert fake.send("/api/v1/events", EVENT).status == 202
    assert len(fake.sandbox.events()) == 1


@pytest.mark.parametrize("status", ["500", "503", "403"])
def test_permanent_faults_until_cleared(fake: Fake, status: str) -> None:
    fake.sandbox.set_faults(fake.org, intake=status)
    for _ in range(3):
        assert fake.send("/api/v2/series", series()).status == int(status)
    # /api/v1/validate is not intake: a 403 fault there would mean a revoked key.
    assert fake.send("/api/v1/validate", method="GET").status == 200
    fake.sandbox.clear_faults(fake.org)
    assert fake.send("/api/v2/series", series()).status == 202


def test_slow_fault_uses_the_sleep_seam(fake: Fake) -> None:
    fake.sandbox.set_faults(fake.org, slow_seconds=2.5)
    assert fake.send("/api/v1/events", EVENT).status == 202
    assert fake.slept == [2.5]


@pytest.mark.django_db
@pytest.mark.parametrize("store", [MemoryStore, OrmStore])
def test_keys_are_bound_to_their_orgs_site(store: type[Store]) -> None:
    fake = Fake(store())
    eu: Org = fake.sandbox.create_org("Euro", domain="datadoghq.eu")
    assert fake.sandbox.store.get_org(eu.id).domain == "datadoghq.eu"
    key = fake.sandbox.create_api_key(eu)
    assert fake.send("/api/v1/events", EVENT, key=key).status == 403  # sent to sandbox.localhost
    assert fake.send("/api/v1/events", EVENT).status == 202  # an org of any site


def test_tenants_only_see_their_own_payloads(fake: Fake) -> None:
    other = fake.sandbox.create_org("Other")
    other_key = fake.sandbox.create_api_key(other)
    fake.send("/api/v1/events", EVENT)
    fake.send("/api/v1/events", {"title": "theirs", "text": "t"}, key=other_key)
    assert [e["title"] for e in fake.sandbox.events(fake.org)] == [EVENT["title"]]
    assert [e["title"] for e in fake.sandbox.events(other)] == ["theirs"]


def test_unknown_path_and_wrong_method(fake: Fake) -> None:
    assert fake.send("/api/v1/nope", {}).status == 404
    wrong = fake.send("/api/v1/events", method="GET")
    assert (wrong.status, wrong.headers["Allow"]) == (405, "POST")


def test_second_active_key_for_an_org_is_refused(fake: Fake) -> None:
    with pytest.raises(ValueError, match="already has an active API key"):
        fake.sandbox.create_api_key(fake.org)
    fake.sandbox.revoke_api_key(fake.org)
    assert fake.sandbox.create_api_key(fake.org) != fake.key


CHECK = {"check": "shop.can_connect", "status": 2, "host_name": "", "tags": ["env:test"]}


def test_service_checks_are_recorded_and_answered_like_datadog(fake: Fake) -> None:
    answer = fake.send("/api/v1/check_run", [CHECK, {**CHECK, "status": 0, "message": "ok"}])
    assert (answer.status, answer.json()) == (202, {"status": "ok"})
    assert [c["status"] for c in fake.sandbox.service_checks(fake.org)] == [2, 0]
    assert fake.send("/api/v1/check_run", [CHECK], key="f" * 32).status == 403


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (CHECK, "must be a list"),
        ([{"check": "x", "status": 0, "tags": []}], "host_name is required"),
        ([{**CHECK, "status": 4}], "status must be 0, 1, 2 or 3"),
        ([{**CHECK, "status": True}], "status must be 0, 1, 2 or 3"),
        ([{**CHECK, "timestamp": "now"}], "timestamp must be int"),
        (["x"], "must be an object"),
    ],
)
def test_invalid_service_checks_get_400(fake: Fake, body: Any, problem: str) -> None:
    answer = fake.send("/api/v1/check_run", body)
    assert answer.status == 400
    assert any(problem in message for message in answer.json()["errors"])
    assert fake.sandbox.service_checks() == []


@pytest.mark.django_db
@pytest.mark.parametrize("store", [MemoryStore, OrmStore])
@pytest.mark.parametrize("required", [False, True])
def test_switch_an_empty_host_name_in_a_service_check(store: type[Store], required: bool) -> None:
    fake = Fake(store())
    fake.sandbox.set_faults(fake.org, check_host_required=required)
    fake.sandbox.clear_faults(fake.org)  # a switch for Datadog's behaviour, not a fault
    answer = fake.send("/api/v1/check_run", [CHECK])
    assert answer.status == (400 if required else 202)
    assert fake.send("/api/v1/check_run", [{**CHECK, "host_name": "web-1"}]).status == 202


@pytest.mark.django_db
@pytest.mark.parametrize("store", [MemoryStore, OrmStore])
def test_switch_series_answers_that_list_errors(store: type[Store]) -> None:
    fake = Fake(store())
    fake.sandbox.set_faults(fake.org, series_errors=True)
    fake.sandbox.clear_faults(fake.org)
    answer = fake.send("/api/v2/series", series())
    assert answer.status == 202 and len(answer.json()["errors"]) == 1
    assert fake.sandbox.series(fake.org)[0]["metric"] == "shop.payments"
