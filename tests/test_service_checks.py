"""Service checks: ``send_service_check`` through the outbox to ``POST /api/v1/check_run``,
with the same guarantees as every other kind (batches, retries, age horizon, key refusal)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_datadog_partner import delivery, payloads
from django_datadog_partner.conf import app_settings
from django_datadog_partner.models import OutboxEvent, OutboxKind
from django_datadog_partner.testing import make_connection
from django_datadog_partner.tracking import send_service_check
from tests.outbox_support import Intake, statuses

pytestmark = pytest.mark.django_db


def test_a_service_check_reaches_the_owners_org_with_its_key(fake, acme):
    conn = fake.connection(acme)
    row = send_service_check(
        acme, check="shop.payments.up", status="critical", message="x" * 900,
        tags=["Env:Prod"], host_name="web-1",
    )  # fmt: skip
    assert row is not None and row.kind == OutboxKind.CHECK
    assert str(delivery.drain()) == "delivered: 1"
    (check,) = fake.service_checks(conn)
    assert check["check"] == "shop.payments.up" and check["status"] == 2
    assert check["host_name"] == "web-1" and check["tags"] == ["env:prod"]
    assert len(check["message"]) == 500  # Datadog shows no more
    (call,) = [c for c in fake.calls if c.path == "/api/v1/check_run"]
    assert call.url == "https://api.datadoghq.com/api/v1/check_run"
    assert "Content-Encoding" not in call.headers and "outbox" not in call.body.decode()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"check": "9lives", "status": 0}, "A check name starts with a letter"),
        ({"check": "a.b", "status": 4}, "status must be 0-3"),
        ({"check": "a.b", "status": "fine"}, "status must be 0-3"),
        ({"check": "a.b", "status": True}, "status must be 0-3"),
        ({"check": "a.b", "status": 0, "when": timedelta(minutes=11)}, "10 minutes in the future"),
    ],
)
def test_what_datadog_would_refuse_raises_at_once(acme, kwargs, problem):
    if "when" in kwargs:  # a time from now, not from when the tests were collected
        kwargs = {**kwargs, "when": timezone.now() + kwargs["when"]}
    with pytest.raises(ValueError, match=problem):
        send_service_check(acme, **kwargs)
    assert not OutboxEvent.objects.exists()


def test_checks_older_than_the_horizon_expire_unsent(fake, acme, partner_settings):
    fake.connection(acme)
    send_service_check(acme, check="a.b", status=0, when=timezone.now() - timedelta(minutes=9))
    send_service_check(acme, check="a.c", status=0, when=timezone.now() - timedelta(minutes=7))
    assert str(delivery.drain()) == "delivered: 1, expired: 1"
    assert [c["check"] for c in fake.service_checks()] == ["a.c"]
    partner_settings(SERVICE_CHECK_MAX_AGE=3600)
    assert app_settings.SERVICE_CHECK_MAX_AGE == 540  # capped under Datadog's 10 minutes


@pytest.mark.parametrize("required", [False, True])
def test_a_check_without_host_name_under_either_answer_of_datadog(fake, acme, required):
    conn = fake.connection(acme)
    fake.set_faults(fake.org_of(conn), check_host_required=required)
    send_service_check(acme, check="shop.up", status=0)
    send_service_check(acme, check="shop.up", status=0, host_name="web-1")
    delivery.drain()
    rows = {row.payload["host_name"]: row for row in OutboxEvent.objects.all()}
    assert rows["web-1"].status == "delivered"
    if required:  # the batch is bisected; the row Datadog refuses is dead, with its reason
        assert (rows[""].status, rows[""].last_error_code) == ("dead", "http_400")
        assert "host_name is empty" in rows[""].last_error
    else:
        assert rows[""].status == "delivered"


def test_checks_are_batched_and_a_refused_key_parks_them(mocked_http, acme):
    intake = Intake(mocked_http)
    make_connection(acme)
    for n in range(1500):
        send_service_check(acme, check="shop.up", status=n % 4, tags=[f"n:{n % 10}"])
    delivery.drain()
    assert sorted(len(a.items()) for a in intake.arrivals) == [500, 1000]
    assert all(len(a.request.body or b"") <= payloads.CHECKS_MAX_BYTES for a in intake.arrivals)

    intake.arrivals.clear()
    intake.respond, intake.validate_status = (lambda arrival: 403), 403
    send_service_check(acme, check="shop.up", status=0)
    delivery.drain()
    assert sorted(set(statuses().values())) == ["delivered", "parked"]
