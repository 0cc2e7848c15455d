"""Logs and metric series in batches: limits, bisection on 400/422, splitting on 413, and
every events/series/logs request checked against Datadog's OpenAPI documents."""

from __future__ import annotations

import gzip
import logging
import random
from collections import Counter
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest

from django_datadog_partner import delivery, leases, packing, payloads, tracking
from django_datadog_partner.models import OutboxEvent
from django_datadog_partner.testing import FakeDatadog, make_connection
from tests.outbox_support import Arrival, statuses
from tests.testapp.models import Order, Organization, Workspace

pytestmark = pytest.mark.django_db

# Copies of shared/datadog-openapi/trimmed/ (Datadog's Apache-2.0 specs), kept with the tests,
# and the service checks operation copied from the full v1 document (its header says how).
SPECS = Path(__file__).parent / "openapi"


SPEC_OF = {"logs": "datadog-logs-intake.yaml", "checks": "datadog-service-checks.yaml"}


@lru_cache(maxsize=3)
def spec(name: str) -> OpenAPI:
    return OpenAPI.from_file_path(str(SPECS / name))


def validate(arrival: Arrival) -> None:
    """Raise unless the request, as sent, is valid for Datadog's own OpenAPI document."""
    request = arrival.request
    body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    headers = {k: v for k, v in request.headers.items() if k != "Content-Encoding"}
    plain = requests.Request(request.method, request.url, headers=headers, data=body).prepare()
    name = SPEC_OF.get(arrival.kind, "datadog-api.yaml")
    spec(name).validate_request(RequestsOpenAPIRequest(plain))


def test_every_payload_kind_validates_against_datadogs_openapi(org, intake):
    make_connection(org)
    make_connection(org, domain="datadoghq.eu")
    workspace = Workspace.objects.create(name="ws")
    make_connection(workspace, domain="us5.datadoghq.com")
    order = Order.objects.create(organization=org, number="%%% [x](//e) %%%", total=12)
    order.status = "paid"
    order.save(update_fields=["status"])
    order.delete()
    tracking.send_event(
        org, title="Deploy " * 40, text="y" * 5000, tags=["Team:Shop Floor", "a" * 300],
        alert_type="success", aggregation_key="k" * 120, priority="low", host="web-1",
        when=timezone.now() - timedelta(hours=1),
    )  # fmt: skip
    for kind in ("gauge", "count", "rate", "unspecified"):
        tracking.send_metric(workspace, f"shop.{kind}", 1.5, metric_type=kind, tags=["env:test"],
                             unit="order", interval=10, host="web-1")  # fmt: skip
    tracking.send_log(workspace, "plain")
    attributes = {"order": {"id": 7}, "amount": 12.5}
    tracking.send_log(org, "paid " * 50, status="error", tags=["env:test"], service="Shop",
                      hostname="web-1", attributes=attributes)  # fmt: skip
    tracking.send_service_check(workspace, check="shop.can_connect", status="critical",
                                message="m" * 900, tags=["env:x"], host_name="web-1")  # fmt: skip
    tracking.send_service_check(workspace, check="shop.ok", status=0)
    summary = delivery.drain()
    # three order events and one event for both of org's connections, 4 points, 3 logs, 2 checks
    assert summary.counts["delivered"] == 4 * 2 + 4 + 3 + 2
    assert {a.kind for a in intake.arrivals} == {"event", "series", "logs", "checks"}
    for arrival in intake.arrivals:
        validate(arrival)
    titles = [a.body["title"] for a in intake.arrivals if a.kind == "event"]
    assert all("%%%" not in title for title in titles)  # user content never turns on markdown


def test_openapi_check_itself_rejects_a_bad_event():
    bad = requests.Request(
        "POST", "https://api.datadoghq.com/api/v1/events",
        headers={"DD-API-KEY": "k", "Content-Type": "application/json"},
        data=payloads.encode({"title": "t", "text": "x" * 4001}),
    ).prepare()  # fmt: skip
    with pytest.raises(Exception, match=r"InvalidRequestBody|body"):
        validate(Arrival("event", "datadoghq.com", "k", {}, bad))


def test_logs_batch_by_count_and_gzip(org, intake, partner_settings):
    partner_settings(DELIVERY_BATCH_SIZE=2500)
    make_connection(org)
    for n in range(2100):
        tracking.send_log(org, f"line {n}")
    delivery.drain()
    assert sorted(len(a.items()) for a in intake.arrivals) == [100, 1000, 1000]
    assert all(a.request.headers["Content-Encoding"] == "gzip" for a in intake.arrivals)
    assert sorted(intake.delivered_ids()) == sorted(statuses())


def test_2000_logs_go_as_two_requests_whatever_the_claim_size(org, intake):
    # DELIVERY_BATCH_SIZE stays at its default (200): the claim tops up log rows to 1,000.
    make_connection(org)
    for n in range(2000):
        tracking.send_log(org, f"line {n}")
    delivery.drain()
    assert sorted(len(a.items()) for a in intake.arrivals) == [1000, 1000]
    assert set(statuses().values()) == {"delivered"}


def test_the_claim_tops_up_batched_kinds_within_a_bounded_window(org):
    def due_in_order(kind: str, count: int, seconds_ago: int) -> None:
        last = OutboxEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        for n in range(count):
            if kind == "log":
                tracking.send_log(org, f"{n}")
            else:
                tracking.send_event(org, title=f"{n}", text="x")
        OutboxEvent.objects.filter(pk__gt=last).update(
            next_attempt_at=timezone.now() - timedelta(seconds=seconds_ago)
        )

    due_in_order("event", 300, 50)
    with CaptureQueriesContext(connection) as queries:
        _, rows = delivery.claim(200)
    # Not counted: savepoints, and the look at the outbox's table, once per process.
    statements = [
        q["sql"] for q in queries if not {"SAVEPOINT", "pg_class"} & set(q["sql"].split())
    ]
    # Events only: no top-up, only the claim's own statements (one UPDATE ... RETURNING
    # where the database has it, else select, lease, read back).
    assert len(rows) == 200 and len(statements) == (1 if leases.one_statement(connection) else 3)
    OutboxEvent.objects.update(lease_until=None, lease_token="")

    due_in_order("log", 50, 60)  # oldest: the first claim takes them
    due_in_order("log", 900, 40)  # behind 300 events and the 150 the claim leaves: found
    _, rows = delivery.claim(200)
    assert Counter(row.kind for row in rows) == {"log": 950, "event": 150}
    OutboxEvent.objects.update(lease_until=None, lease_token="")

    OutboxEvent.objects.filter(kind="log").delete()
    due_in_order("log", 10, 60)
    due_in_order("event", 3000, 50)
    due_in_order("log", 500, 40)  # past the window of 2 x 990 rows: left for later runs
    _, rows = delivery.claim(200)
    assert Counter(row.kind for row in rows) == {"log": 10, "event": 190}


def test_logs_fill_five_megabytes_per_request(org, intake):
    make_connection(org)
    for n in range(11):
        tracking.send_log(org, f"{n} " + "x" * 1_500_000)  # each is cut to Datadog's 1 MB
    delivery.drain()
    assert sorted(len(a.items()) for a in intake.arrivals) == [1, 5, 5]
    for arrival in intake.arrivals:
        assert len(gzip.decompress(arrival.request.body)) <= payloads.LOGS_MAX_BYTES
        for entry in arrival.items():
            assert len(payloads.encode(entry)) <= payloads.LOG_ENTRY_MAX_BYTES
            assert entry["message"].endswith("...TRUNCATED...")
        validate(arrival)


def metric_rows(org: Organization, count: int, tag_values: Any) -> None:
    with transaction.atomic():
        for n in range(count):
            tags = [f"tag{t}:{tag_values(n, t)}" for t in range(10)]
            tracking.send_metric(org, "shop.load", n, tags=tags)


def test_a_five_megabyte_series_batch_is_one_request_under_the_compressed_limit(org, intake):
    make_connection(org)
    metric_rows(org, 8900, lambda n, t: f"{'v' * 40}{n % 7}")  # ~580 bytes a point
    delivery.drain()
    (arrival,) = intake.arrivals
    wire = arrival.request.body
    assert arrival.request.headers["Content-Encoding"] == "gzip"
    assert len(wire) <= payloads.SERIES_MAX_COMPRESSED
    assert 5_100_000 < len(gzip.decompress(wire)) <= payloads.SERIES_MAX_BYTES
    assert len(arrival.items()) == 8900 and set(statuses().values()) == {"delivered"}
    validate(arrival)


def test_series_that_compress_badly_fill_512_000_bytes_per_request(org, intake):
    make_connection(org)
    rng = random.Random(7)
    metric_rows(org, 3000, lambda n, t: f"{rng.getrandbits(160):040x}")
    delivery.drain()
    sent = [len(a.request.body) for a in intake.arrivals]
    assert len(sent) >= 2 and max(sent) <= payloads.SERIES_MAX_COMPRESSED
    assert min(sorted(sent)[1:]) > 0.97 * payloads.SERIES_MAX_COMPRESSED  # full, not only under
    assert sum(len(a.items()) for a in intake.arrivals) == 3000


def test_a_series_202_that_lists_errors_is_delivered_with_the_errors_kept(org, intake, caplog):
    make_connection(org)
    dropped = '{"errors": ["Point of shop.b at 1 is out of range"]}'
    intake.respond = lambda arrival: (202, {}, dropped) if arrival.kind == "series" else 202
    tracking.send_metric(org, "shop.a", 1)
    tracking.send_metric(org, "shop.b", 2)
    tracking.send_log(org, "fine")
    with caplog.at_level(logging.WARNING, logger="django_datadog_partner.delivery"):
        summary = delivery.drain()
    assert str(summary) == "delivered: 3, delivered_with_errors: 2"
    rows = OutboxEvent.objects.filter(kind="metric")
    assert {(r.status, r.last_error_code) for r in rows} == {("delivered", "accepted_with_errors")}
    assert {r.last_error for r in rows} == {"Point of shop.b at 1 is out of range"}
    assert OutboxEvent.objects.get(kind="log").last_error == ""
    assert "with errors: Point of shop.b at 1 is out of range" in caplog.text


def test_the_sandbox_switch_for_series_answers_with_errors(org):
    with FakeDatadog() as fake:
        conn = fake.connection(org)
        fake.set_faults(fake.org_of(conn), series_errors=True)
        tracking.send_metric(org, "shop.a", 1)
        assert str(delivery.drain()) == "delivered: 1, delivered_with_errors: 1"
    row = OutboxEvent.objects.get()
    assert row.last_error_code == "accepted_with_errors" and "Sandbox" in row.last_error


def bad_if_marked(arrival: Arrival) -> int:
    messages = [item.get("message", item.get("metric", "")) for item in arrival.items()]
    return 400 if any("bad" in m for m in messages) else 202


@pytest.mark.parametrize("kind", ["log", "metric"])
def test_a_rejected_batch_is_bisected_to_the_bad_rows(org, intake, kind):
    make_connection(org)
    intake.respond = bad_if_marked
    bad = {3, 11}
    for n in range(16):
        name = f"bad.{n}" if n in bad else f"ok.{n}"
        if kind == "log":
            tracking.send_log(org, name)
        else:
            tracking.send_metric(org, name, n)
    delivery.drain()
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert [r.status for r in rows] == ["dead" if n in bad else "delivered" for n in range(16)]
    assert {r.last_error_code for r in rows if r.status == "dead"} == {"http_400"}
    assert len(intake.arrivals) <= 1 + 2 * 2 * 4  # two bad rows, four levels of halving
    accepted = [a for a in intake.arrivals if bad_if_marked(a) == 202]
    assert sum(len(a.items()) for a in accepted) == 14


def test_a_too_large_batch_is_split(org, intake):
    make_connection(org)
    intake.respond = lambda a: 413 if len(a.items()) > 3 else 202
    for n in range(10):
        tracking.send_log(org, f"line {n}")
    delivery.drain()
    assert set(statuses().values()) == {"delivered"}
    assert sorted(len(a.items()) for a in intake.arrivals if len(a.items()) <= 3) == [2, 2, 3, 3]


def test_a_single_too_large_log_is_dead(org, intake):
    make_connection(org)
    intake.respond = lambda a: 413
    tracking.send_log(org, "huge")
    delivery.drain()
    assert list(statuses().values()) == ["dead"] and len(intake.arrivals) == 1


def test_a_retryable_answer_in_a_batch_retries_the_whole_batch(org, intake):
    make_connection(org)
    intake.respond = lambda a: 503
    for n in range(5):
        tracking.send_log(org, f"line {n}")
    delivery.drain()
    rows = list(OutboxEvent.objects.all())
    assert {(r.status, r.attempts, r.last_error_code) for r in rows} == {("pending", 1, "http_503")}
    assert len(intake.arrivals) == 1


LIMITS = packing.BatchLimits(b"[", b"]", max_items=2, max_bytes=1000, gzip=False)


def test_pack_keeps_order_and_limits() -> None:
    def groups(parts: list[bytes], limits: packing.BatchLimits = LIMITS) -> list[list[int]]:
        return [packed.indexes for packed in packing.pack(parts, limits)]

    assert groups([b"1", b"2", b"3"]) == [[0, 1], [2]]
    assert groups([b"a" * 600, b"b" * 600, b"c"]) == [[0], [1, 2]]
    assert groups([b"a" * 5000]) == [[0]]  # too large alone: Datadog judges it
    assert groups([]) == []
    (packed,) = packing.pack([b"1", b"2"], LIMITS)
    assert (packed.body, packed.raw_size) == (b"[1,2]", 5)


@pytest.mark.parametrize("seed", range(4))
def test_packed_gzip_bodies_are_exact_and_within_every_limit(seed: int) -> None:
    rng = random.Random(seed)
    limits = packing.BatchLimits(b'{"s":[', b"]}", 10_000, 400_000, max_sent=30_000)
    parts = [
        (b"%x" % rng.getrandbits(8 * rng.randint(1, 300)) if rng.random() < 0.5 else b"7" * 900)
        for _ in range(3000)
    ]
    bodies = packing.pack(parts, limits)
    assert [i for packed in bodies for i in packed.indexes] == list(range(3000))
    for packed in bodies:
        raw = gzip.decompress(packed.body)
        assert raw == b'{"s":[' + b",".join(parts[i] for i in packed.indexes) + b"]}"
        assert len(raw) == packed.raw_size <= limits.max_bytes
        assert len(packed.body) <= 30_000
    assert min(len(packed.body) for packed in bodies[:-1]) > 0.9 * 30_000


def test_payload_rules(org) -> None:
    entry: dict[str, Any] = payloads.log_entry(
        "m", timestamp=timezone.now(), source="MyApp", service="Shop", tags=["A B", "", "a_b"]
    )
    assert (entry["ddsource"], entry["service"], entry["ddtags"]) == ("myapp", "shop", "a_b")
    assert payloads.looks_secret("api_key") and payloads.looks_secret("PasswordHash")
    assert not payloads.looks_secret("monkey_name") and not payloads.looks_secret("keyboard")
    assert len(payloads.object_key("app.model", "x" * 200)) <= 100
    assert payloads.object_key("app.model", "x" * 200) != payloads.object_key(
        "app.model", "y" * 200
    )
    assert payloads.normalize_tag(" Env:Prod/EU West ") == "env:prod/eu_west"
    with pytest.raises(ValueError, match="attributes alone exceed"):
        payloads.log_entry("m", timestamp=timezone.now(), source="s", service="s",
                           attributes={"blob": "x" * payloads.LOG_ENTRY_MAX_BYTES})  # fmt: skip
