"""OAuth and keys through the real flow (test client + fake Datadog): whose a marketplace
refusal is, Datadog's recovery of a lost or revoked key (revoke the "OAuth Client API
Key", authorise again; a revoked key can be restored for 7 days), the callback Datadog
sends, and a disconnect sent as Datadog's example sends it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from django_datadog_partner import delivery, failures, tracking
from django_datadog_partner.connections import check_health
from django_datadog_partner.models import Alarm, Connection, ConnectionStatus, OutboxStatus
from django_datadog_partner.sandbox.state import Org, digest
from django_datadog_partner.testing import FakeDatadog
from tests.connect_support import CONNECTED, connect_through, make_user, signed_in, start

pytestmark = pytest.mark.django_db


class Customer:
    """A user of our product and their Datadog org, connecting through the real flow."""

    def __init__(self, datadog: FakeDatadog, django_user_model: Any) -> None:
        self.datadog = datadog
        self.user = make_user(django_user_model, "ada")
        self.browser: Client = signed_in(self.user)
        self.org: Org = datadog.create_org("Acme")
        self.dd_user = datadog.create_user(self.org, "ada")

    def connect(self) -> Any:
        return connect_through(self.browser, self.datadog, self.dd_user)

    @property
    def connection(self) -> Connection:
        return Connection.objects.get()

    def press(self, action: str) -> None:
        self.browser.post(f"/datadog/connections/{self.connection.pk}/{action}/")

    def reconnect(self) -> Any:
        response = self.browser.post(f"/datadog/connections/{self.connection.pk}/reconnect/")
        callback = self.datadog.authorize(response["Location"], self.dd_user)
        return self.browser.get(callback[callback.index("/datadog/") :])

    def ship(self, title: str) -> None:
        tracking.send_event(self.user, title=title, text="for Acme")
        delivery.drain()

    def received(self) -> list[str]:
        return [event["title"] for event in self.datadog.events(self.org)]

    def key_in_datadog(self) -> Any:
        key = self.connection.api_key
        assert key is not None
        return self.datadog.store.find_key(digest(key.reveal()))


@pytest.fixture
def customer(datadog: FakeDatadog, django_user_model: Any) -> Customer:
    return Customer(datadog, django_user_model)


def reason_of(response: Any) -> str:
    return dict(parse_qsl(urlsplit(response["Location"]).query)).get("reason", "")


# --- Whose a marketplace 401/403 is -----------------------------------------------------


def test_a_user_who_may_not_create_keys_is_told_so_without_a_vendor_alarm(
    customer: Customer, datadog: FakeDatadog
) -> None:
    datadog.set_faults(customer.org, key_creation="403")  # the token holds api_keys_write
    response = customer.connect()
    assert reason_of(response) == failures.USER_CANNOT_CREATE_KEYS
    page = customer.browser.get(response["Location"])
    assert page.status_code == 403
    assert "Your Datadog user may not create API keys" in page.content.decode()
    assert customer.connection.status == ConnectionStatus.KEY_MISSING
    assert "may not create API keys" in customer.connection.status_reason
    assert not Alarm.objects.exists()

    datadog.clear_faults(customer.org)  # a Datadog admin granted the permission
    customer.press("api-key")
    assert customer.connection.status == ConnectionStatus.ACTIVE
    assert customer.key_in_datadog().org == customer.org


def test_a_client_without_api_keys_write_raises_the_vendor_alarm(
    customer: Customer, partner_settings
) -> None:
    with partner_settings(SCOPES=["events_read"]):  # granted, and listed in the token answer
        response = customer.connect()
    assert reason_of(response) == failures.MISSING_API_KEYS_WRITE
    assert customer.connection.status == ConnectionStatus.KEY_MISSING
    assert Alarm.objects.get().code == "api_keys_write_missing"


# --- A revoked key ---------------------------------------------------------------------


def test_a_restored_key_resumes_the_rows_parked_while_it_was_rejected(
    customer: Customer, datadog: FakeDatadog
) -> None:
    assert customer.connect()["Location"] == CONNECTED
    customer.ship("Order 1")
    datadog.revoke_api_key(customer.org)
    customer.ship("Order 2")
    assert customer.connection.status == ConnectionStatus.API_KEY_REJECTED
    assert customer.connection.outbox_events.get(status=OutboxStatus.PARKED)

    assert datadog.restore_api_key(customer.org) == 1  # within Datadog's 7 days
    assert check_health(customer.connection).healthy
    assert customer.connection.status == ConnectionStatus.ACTIVE
    delivery.drain()
    assert customer.received() == ["Order 1", "Order 2"]
    assert not customer.connection.outbox_events.filter(status=OutboxStatus.PARKED).exists()


def test_a_409_while_the_revoked_key_is_restorable_says_so_and_a_restore_resumes(
    customer: Customer, datadog: FakeDatadog
) -> None:
    datadog.set_faults(customer.org, restorable_key_conflict=True)
    customer.connect()
    datadog.revoke_api_key(customer.org)
    customer.ship("Order 1")  # parked: Datadog rejects the key
    assert customer.reconnect()["Location"] == CONNECTED  # Datadog answers 409

    connection = customer.connection
    assert connection.status == ConnectionStatus.KEY_MISSING
    assert connection.api_key is not None  # kept: a restore makes it work again
    page = customer.browser.get(CONNECTED).content.decode()
    assert "can be restored in Datadog for 7 days" in page
    assert f"ending in {connection.api_key_last4}" in page

    datadog.restore_api_key(customer.org)
    customer.press("api-key")  # "Create the API key again" keeps a key Datadog accepts
    assert customer.connection.status == ConnectionStatus.ACTIVE
    delivery.drain()
    assert customer.received() == ["Order 1"]


def test_once_the_7_days_are_over_authorising_again_gets_a_new_key(
    customer: Customer, datadog: FakeDatadog
) -> None:
    datadog.set_faults(customer.org, restorable_key_conflict=True)
    customer.connect()
    old_key = customer.key_in_datadog()
    datadog.revoke_api_key(customer.org)
    for key in datadog.store.state.keys.values():  # type: ignore[attr-defined]
        key.revoked_at -= timedelta(days=7, minutes=1)
    assert datadog.restore_api_key(customer.org) == 0

    assert customer.reconnect()["Location"] == CONNECTED
    assert customer.connection.status == ConnectionStatus.ACTIVE
    assert customer.key_in_datadog().key_id != old_key.key_id
    assert Connection.objects.count() == 1  # the same connection, in place


def test_without_the_switch_a_revoked_key_does_not_block_a_new_one(
    customer: Customer, datadog: FakeDatadog
) -> None:
    customer.connect()
    datadog.revoke_api_key(customer.org)
    assert customer.reconnect()["Location"] == CONNECTED
    assert customer.connection.status == ConnectionStatus.ACTIVE
    assert not customer.key_in_datadog().revoked


# --- The callback Datadog sends ----------------------------------------------------------


def test_the_callback_carries_site_dd_oid_and_dd_org_name_by_default(
    customer: Customer, datadog: FakeDatadog
) -> None:
    callback = datadog.authorize(start(customer.browser).url, customer.dd_user)
    params = dict(parse_qsl(urlsplit(callback).query))
    assert set(params) == {"code", "state", "domain", "site", "dd_oid", "dd_org_name"}
    assert (params["domain"], params["site"]) == ("datadoghq.com", "https://app.datadoghq.com")
    assert (params["dd_oid"], params["dd_org_name"]) == (customer.org.public_id, "Acme")


# --- Disconnect ---------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["bearer ignored", "bearer checked"])
def test_disconnect_revokes_the_grant_whether_or_not_datadog_checks_the_bearer(
    customer: Customer, datadog: FakeDatadog, strict: bool
) -> None:
    """Datadog's example sends ``Authorization: Bearer``; whether revoke checks it is not
    documented. Either way the disconnect completes and no vendor alarm is raised, also
    with an access token that expired long ago."""
    datadog.set_faults(customer.org, revoke_needs_bearer=strict)
    customer.connect()
    Connection.objects.update(expires_at=timezone.now() - timedelta(hours=5))
    customer.press("disconnect")
    assert customer.connection.status == ConnectionStatus.REVOKED
    assert not Alarm.objects.exists()
    revokes = [c for c in datadog.calls if c.path == "/oauth2/v1/revoke"]
    assert 200 in {c.status for c in revokes}
    assert all(c.headers.get("Authorization") != "Bearer " for c in revokes)
    grants = datadog.store.state.grants.values()  # type: ignore[attr-defined]
    assert grants and all(grant.revoked for grant in grants)
