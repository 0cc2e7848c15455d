"""Everything the project sends to Datadog's intake validates against Datadog's OpenAPI files,
and the fake Datadog accepts exactly that (so the sandbox is not more lenient than the spec
in the ways the project relies on)."""

from __future__ import annotations

import gzip
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.utils import timezone
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest
from openapi_core.validation.request.exceptions import RequestBodyValidationError

from django_datadog_partner import delivery
from django_datadog_partner.testing import Call, FakeDatadog
from django_datadog_partner.tracking import send_event, send_log, send_metric, send_service_check
from tests.testapp.models import Order, Organization

pytestmark = pytest.mark.django_db

OPENAPI = Path(__file__).resolve().parent / "openapi"
API = "https://api.datadoghq.com"
INTAKE_PATHS = {"/api/v1/events", "/api/v2/series", "/api/v2/logs", "/api/v1/check_run"}
SPEC_OF_PATH = {"/api/v2/logs": "logs", "/api/v1/check_run": "checks"}


@pytest.fixture(scope="module")
def specs() -> dict[str, OpenAPI]:
    return {
        "api": OpenAPI.from_file_path(str(OPENAPI / "datadog-api.yaml")),
        "logs": OpenAPI.from_file_path(str(OPENAPI / "datadog-logs-intake.yaml")),
        "checks": OpenAPI.from_file_path(str(OPENAPI / "datadog-service-checks.yaml")),
    }


def as_sent(call: Call) -> requests.PreparedRequest:
    """The request with its body decompressed, as the OpenAPI schema describes it."""
    headers = {k: v for k, v in call.headers.items() if k.lower() != "content-encoding"}
    encoding = call.headers.get("Content-Encoding", "")
    body = call.body
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding == "deflate":
        body = zlib.decompress(body)
    return requests.Request(call.method, call.url, headers=headers, data=body).prepare()


def test_every_intake_request_validates_against_datadogs_openapi(
    fake: FakeDatadog, specs: dict[str, OpenAPI]
) -> None:
    acme = Organization.objects.create(name="Acme")
    fake.connection(owner=acme)
    order = Order.objects.create(organization=acme, number="1001", total=12, secret_note="x")
    order.status = "paid"
    order.save(update_fields=["status"])
    send_event(
        acme,
        title="Refund",
        text="%%% \n**refunded** \n %%%",
        tags=["refund"],
        alert_type="warning",
        aggregation_key="refund-1001",
        priority="low",
        host="web-1",
    )
    earlier = timezone.now() - timedelta(minutes=5)
    send_metric(acme, "shop.payments", 12.5, tags=["currency:eur"], unit="euro", host="web-1")
    send_metric(acme, "shop.orders", 3, metric_type="count", interval=60, when=earlier)
    send_metric(acme, "shop.rate", 0.5, metric_type="rate", interval=10)
    send_log(acme, "Order 1001 paid", tags=["order:1001"], attributes={"amount": "12.00"})
    send_log(acme, "Refund failed", status="error", service="payments", hostname="web-1")
    send_log(acme, "huge " * 300_000)
    send_service_check(acme, check="shop.payments.up", status="warning", message="slow")
    send_service_check(acme, check="shop.api.up", status=0, host_name="web-1", tags=["env:x"])

    delivery.drain()

    intake = [call for call in fake.calls if call.path in INTAKE_PATHS]
    assert {call.path for call in intake} == INTAKE_PATHS
    assert all(call.status == 202 for call in intake), [(c.path, c.status) for c in intake]
    for call in intake:
        spec = specs[SPEC_OF_PATH.get(call.path, "api")]
        spec.validate_request(RequestsOpenAPIRequest(as_sent(call)))
    assert {c.headers.get("Content-Encoding") for c in intake if "v2" in c.path} == {"gzip"}
    assert len(fake.events()) == 3
    assert {s["metric"] for s in fake.series()} == {"shop.payments", "shop.orders", "shop.rate"}
    assert len(fake.logs()) == 3
    assert [c["check"] for c in fake.service_checks()] == ["shop.payments.up", "shop.api.up"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/events", {"text": "no title"}),
        ("/api/v1/events", {"title": "t", "text": "x", "date_happened": "yesterday"}),
        ("/api/v2/series", {"series": [{"metric": "m"}]}),
        ("/api/v2/logs", [{"ddsource": 5, "message": "m"}]),
        ("/api/v1/check_run", [{"check": "c", "status": 0, "tags": []}]),
        ("/api/v1/check_run", [{"check": "c", "status": 5, "tags": [], "host_name": ""}]),
    ],
)
def test_what_the_spec_refuses_the_sandbox_refuses(
    fake: FakeDatadog, specs: dict[str, OpenAPI], path: str, body: object
) -> None:
    acme = Organization.objects.create(name="Acme")
    connection = fake.connection(owner=acme)
    assert connection.api_key is not None
    host = "https://http-intake.logs.datadoghq.com" if path.endswith("logs") else API
    response = requests.post(
        host + path, json=body, headers={"DD-API-KEY": connection.api_key.reveal()}, timeout=5
    )
    assert response.status_code == 400
    spec = specs[SPEC_OF_PATH.get(path, "api")]
    with pytest.raises(RequestBodyValidationError):
        spec.validate_request(RequestsOpenAPIRequest(as_sent(fake.calls[-1])))
