"""Logs and metric series in batches: limits, bisection on 400/422, splitting on 413, and
every events/series/logs request checked against Datadog's OpenAPI documents."""

from __future__ import annotations

import gzip
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import requests
from django.utils import timezone
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest

from django_datadog_partner import delivery, payloads, tracking
from django_datadog_partner.models import OutboxEvent
from tests.outbox_support import Arrival, Intake, make_connection, statuses
from tests.testapp.models import Order, Organization, Workspace

pytestmark = pytest.mark.django_db

# Copies of shared/datadog-openapi/trimmed/ (Datadog's Apache-2.0 specs), kept with the tests.
SPECS = Path(__file__).parent / "openapi"


@lru_cache(maxsize=2)
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
    name = "datadog-logs-intake.yaml" if arrival.kind == "logs" else "datadog-api.yaml"
    spec(name).validate_request(RequestsOpenAPIRequest(plain))


@pytest.fixture
def org() -> Organization:
    return Organization.objects.create(name="Acme")


@pytest.fixture
def intake(mocked_http) -> Intake:
    return Intake(mocked_http, domains=("datadoghq.com", "datadoghq.eu", "us5.datadoghq.com"))


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
    summary = delivery.drain()
    # three order events and one event for both of org's connections, 4 points, 3 logs
    assert summary.counts["delivered"] == 4 * 2 + 4 + 3
    assert {a.kind for a in intake.arrivals} == {"event", "series", "logs"}
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


def test_logs_batch_by_count_and_gzip(org, intake, settings):
    settings.DATADOG_PARTNER = {**settings.DATADOG_PARTNER, "DELIVERY_BATCH_SIZE": 2500}
    make_connection(org)
    for n in range(2100):
        tracking.send_log(org, f"line {n}")
    delivery.drain()
    assert sorted(len(a.items()) for a in intake.arrivals) == [100, 1000, 1000]
    assert all(a.request.headers["Content-Encoding"] == "gzip" for a in intake.arrivals)
    assert sorted(intake.delivered_ids()) == sorted(statuses())


def test_series_batches_stay_under_500_kb(org, intake, settings):
    settings.DATADOG_PARTNER = {**settings.DATADOG_PARTNER, "DELIVERY_BATCH_SIZE": 5000}
    make_connection(org)
    tags = [f"tag{n}:{'v' * 150}" for n in range(10)]
    for n in range(400):
        tracking.send_metric(org, "shop.load", n, tags=tags)
    delivery.drain()
    sizes = [len(a.request.body) for a in intake.arrivals]
    assert len(sizes) > 1 and max(sizes) <= payloads.SERIES_MAX_BYTES
    assert sum(len(a.items()) for a in intake.arrivals) == 400


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


def test_pack_keeps_order_and_limits() -> None:
    assert payloads.pack([10, 10, 10], max_items=2, max_bytes=1000) == [[0, 1], [2]]
    assert payloads.pack([600, 600, 10], max_items=10, max_bytes=1000) == [[0], [1, 2]]
    assert payloads.pack([5000], max_items=10, max_bytes=1000) == [[0]]
    assert payloads.pack([], max_items=10, max_bytes=1000) == []


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
