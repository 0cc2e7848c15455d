"""Connection identity through the real flow: the views, the test client and the fake Datadog.

Which organisation a connection belongs to comes from Datadog's own answers (the
marketplace 201/409, ``GET /api/v2/users/{id}/orgs``), never from what the browser brings
back on the callback; each test is an attempt a tenant could make on their own flow.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from django_datadog_partner import delivery, failures, tracking
from django_datadog_partner.connections.api_keys import api_keys_page_url
from django_datadog_partner.models import Connection, ConnectionStatus
from django_datadog_partner.sandbox.state import Org, digest
from django_datadog_partner.testing import FakeDatadog
from tests.connect_support import (
    CONNECTED,
    connect_through,
    make_user,
    signed_in,
    start,
    through_datadog,
)
from tests.testapp.models import Organization

pytestmark = pytest.mark.django_db

#: The callback as Datadog documents it, without its undocumented extras.
BARE = {"dd_oid": None, "dd_org_name": None, "site": None}


class Tenant:
    """A customer: a user of our product with a browser, and their own Datadog org."""

    def __init__(self, datadog: FakeDatadog, django_user_model: Any, name: str) -> None:
        self.user = make_user(django_user_model, name)
        self.browser = signed_in(self.user)
        self.org = datadog.create_org(f"{name} Inc")
        self.dd_user = datadog.create_user(self.org, name)

    def connections(self) -> list[Connection]:
        return list(Connection.objects.owned_by(self.user).order_by("pk"))

    def connect(self, datadog: FakeDatadog, *, claiming: Tenant | None = None) -> None:
        """Connect their own org; ``claiming``: with the callback rewritten to name that
        tenant's org (``dd_oid``/``dd_org_name``), as an attacker would."""
        named = claiming or self
        forged = {"dd_oid": named.org.public_id, "dd_org_name": named.org.name}
        response = connect_through(self.browser, datadog, self.dd_user, **forged)
        assert response["Location"] == CONNECTED


def org_of_key(datadog: FakeDatadog, connection: Connection) -> Org | None:
    """The fake Datadog's org that holds the connection's API key (None: no key)."""
    if connection.api_key is None:
        return None
    info = datadog.store.find_key(digest(connection.api_key.reveal()))
    return info.org if info else None


def titles(datadog: FakeDatadog, org: Org) -> list[str]:
    return [event["title"] for event in datadog.events(org)]


def ship(owner: Any, title: str) -> None:
    tracking.send_event(owner, title=title, text="for this tenant only")
    delivery.drain()


# --- Finding 1: a forged dd_oid never moves keys or telemetry between tenants ----------


def test_a_forged_dd_oid_never_sends_the_victims_data_to_the_attackers_org(
    datadog: FakeDatadog, django_user_model: Any
) -> None:
    victim = Tenant(datadog, django_user_model, "victim")
    mallory = Tenant(datadog, django_user_model, "mallory")
    datadog.create_api_key(victim.org)  # an earlier install: the org holds its key (409)
    mallory.connect(datadog, claiming=victim)
    victim.connect(datadog)  # Datadog answers 409: the org holds its key
    ship(victim.user, "Victim order 1")
    assert titles(datadog, mallory.org) == []
    assert titles(datadog, victim.org) == []  # no key yet: nothing sent anywhere

    (plant,) = mallory.connections()
    (theirs,) = victim.connections()
    assert theirs.status == ConnectionStatus.KEY_MISSING
    assert theirs.api_key is None
    assert (plant.dd_org_id, plant.dd_org_name) == (mallory.org.public_id, mallory.org.name)


def test_a_forged_dd_oid_never_gives_the_attacker_the_victims_key(
    datadog: FakeDatadog, django_user_model: Any
) -> None:
    victim = Tenant(datadog, django_user_model, "victim")
    mallory = Tenant(datadog, django_user_model, "mallory")
    victim.connect(datadog)
    (theirs,) = victim.connections()
    assert org_of_key(datadog, theirs) == victim.org
    datadog.create_api_key(mallory.org)  # so Datadog answers Mallory's flow with 409
    mallory.connect(datadog, claiming=victim)
    ship(mallory.user, "Injected by Mallory")
    ship(victim.user, "Victim order 2")
    assert titles(datadog, victim.org) == ["Victim order 2"]

    (plant,) = mallory.connections()
    assert plant.api_key is None
    assert plant.status == ConnectionStatus.KEY_MISSING
    assert plant.dd_org_id == "" and plant.dd_org_name == ""


def test_the_org_datadog_names_is_stored_not_the_callbacks(
    datadog: FakeDatadog, django_user_model: Any
) -> None:
    alice = Tenant(datadog, django_user_model, "alice")
    forged = {"dd_oid": "00000000-0000-0000-0000-000000000000", "dd_org_name": "Forged"}
    assert connect_through(alice.browser, datadog, alice.dd_user, **forged)["Location"] == CONNECTED
    (connection,) = alice.connections()
    assert (connection.dd_org_id, connection.dd_org_name) == (alice.org.public_id, alice.org.name)
    page = alice.browser.get(CONNECTED).content.decode()
    assert "Forged" not in page and alice.org.name in page
    # The success page names the owner and the organisation Datadog confirmed.
    assert "alice is connected to Datadog" in page
    assert f"Datadog organisation: ‘{alice.org.name}’ (US1)" in page


# --- Finding 2: a second org of the same owner gets its own connection and key --------


def test_a_second_org_without_org_id_gets_its_own_connection_and_key(
    datadog: FakeDatadog, django_user_model: Any
) -> None:
    alice = Tenant(datadog, django_user_model, "alice")
    second_org = datadog.create_org("alice Second")
    second_user = datadog.create_user(second_org, "alice")
    assert connect_through(alice.browser, datadog, alice.dd_user, **BARE)["Location"] == CONNECTED
    assert connect_through(alice.browser, datadog, second_user, **BARE)["Location"] == CONNECTED

    first, second = alice.connections()
    assert org_of_key(datadog, first) == alice.org
    assert org_of_key(datadog, second) == second_org
    assert (first.dd_org_id, second.dd_org_id) == (alice.org.public_id, second_org.public_id)
    first_token = datadog.store.find_token(digest(first.access_token.reveal()))  # type: ignore[union-attr]
    assert first_token is not None and first_token.org == alice.org

    ship(alice.user, "Order 1")
    assert titles(datadog, alice.org) == ["Order 1"]
    assert titles(datadog, second_org) == ["Order 1"]


def test_the_same_org_again_updates_its_connection_in_place(
    datadog: FakeDatadog, django_user_model: Any
) -> None:
    alice = Tenant(datadog, django_user_model, "alice")
    connect_through(alice.browser, datadog, alice.dd_user, **BARE)
    (first,) = alice.connections()
    assert connect_through(alice.browser, datadog, alice.dd_user, **BARE)["Location"] == CONNECTED
    (again,) = alice.connections()
    assert again.pk == first.pk and again.api_key_fingerprint == first.api_key_fingerprint
    assert again.status == ConnectionStatus.ACTIVE
    assert "is reconnected to Datadog" in alice.browser.get(CONNECTED).content.decode()


def test_datadogs_recovery_for_a_lost_key_restores_the_connection_in_place(
    datadog: FakeDatadog, django_user_model: Any
) -> None:
    """Revoke the "OAuth Client API Key" in Datadog, then authorise again from the tile."""
    alice = Tenant(datadog, django_user_model, "alice")
    connect_through(alice.browser, datadog, alice.dd_user)
    (first,) = alice.connections()
    datadog.revoke_api_key(alice.org)
    assert connect_through(alice.browser, datadog, alice.dd_user)["Location"] == CONNECTED
    (restored,) = alice.connections()
    assert restored.pk == first.pk
    assert restored.api_key_fingerprint != first.api_key_fingerprint
    assert org_of_key(datadog, restored) == alice.org
    ship(alice.user, "Order 1")
    assert titles(datadog, alice.org) == ["Order 1"]


def test_a_second_owner_of_one_org_gets_key_missing_and_datadogs_recovery(
    datadog: FakeDatadog, django_user_model: Any
) -> None:
    alice = Tenant(datadog, django_user_model, "alice")
    connect_through(alice.browser, datadog, alice.dd_user)
    bob = make_user(django_user_model, "bob")
    browser = signed_in(bob)
    colleague = datadog.create_user(alice.org, "bob")
    assert connect_through(browser, datadog, colleague)["Location"] == CONNECTED
    mine = Connection.objects.owned_by(bob).get()
    assert mine.status == ConnectionStatus.KEY_MISSING and mine.api_key is None
    page = browser.get(CONNECTED).content.decode()
    assert "OAuth Client API Key" in page and "Create the API key again" in page
    (theirs,) = alice.connections()
    assert theirs.status == ConnectionStatus.ACTIVE


# --- Finding 3: the stored site belongs to the stored region --------------------------


@pytest.mark.parametrize(
    ("callback_site", "stored"),
    [
        ("https://app.datadoghq.eu", "https://app.datadoghq.eu"),  # as the fake sends it
        (None, "https://app.datadoghq.eu"),  # bare callback: the region's web address
        ("https://acme.datadoghq.eu", "https://acme.datadoghq.eu"),  # a custom subdomain
        ("https://app.datadoghq.com", "https://app.datadoghq.eu"),  # another region's
        ("https://us3.datadoghq.com", "https://app.datadoghq.eu"),
        ("https://evil.example", "https://app.datadoghq.eu"),
    ],
)
def test_a_region_switch_on_datadogs_side_moves_the_site_with_it(
    datadog: FakeDatadog, django_user_model: Any, callback_site: str | None, stored: str
) -> None:
    alice = Tenant(datadog, django_user_model, "alice")
    eu_org = datadog.create_org("Alice EU", domain="datadoghq.eu")
    eu_user = datadog.create_user(eu_org, "alice")
    started = start(alice.browser, "datadoghq.com", "app.datadoghq.com")  # US1's tile
    datadog.domain = "datadoghq.eu"  # the user picked EU on Datadog's side
    response = through_datadog(alice.browser, datadog, eu_user, started.url, site=callback_site)
    assert response["Location"] == CONNECTED
    (connection,) = alice.connections()
    assert (connection.domain, connection.site) == ("datadoghq.eu", stored)
    assert org_of_key(datadog, connection) == eu_org

    assert api_keys_page_url(connection) == f"{stored}/organization-settings/api-keys"
    again = alice.browser.post(f"/datadog/connections/{connection.pk}/reconnect/")
    location = urlsplit(again["Location"])
    assert (f"https://{location.netloc}", location.path) == (stored, "/oauth2/v1/authorize")


# --- Finding 5: membership is checked again when Datadog sends the user back -----------


def members_of(user: Any) -> list[Organization]:
    return list(Organization.objects.filter(members=user).order_by("pk"))


@pytest.fixture
def acme_member(
    partner_settings: Any, datadog: FakeDatadog, django_user_model: Any
) -> tuple[Tenant, Organization]:
    """Alice, a member of the owner Acme (``OWNERS_FOR_USER``: the user's organisations)."""
    partner_settings(OWNERS_FOR_USER=members_of)
    alice = Tenant(datadog, django_user_model, "alice")
    acme = Organization.objects.create(name="Acme")
    acme.members.add(alice.user)
    return alice, acme


def assert_refused(response: Any) -> None:
    assert dict(parse_qsl(urlsplit(response["Location"]).query)) == {
        "reason": failures.OWNER_NOT_ALLOWED
    }


def test_a_user_removed_from_the_owner_mid_flow_connects_nothing(
    datadog: FakeDatadog, acme_member: tuple[Tenant, Organization]
) -> None:
    alice, acme = acme_member
    started = start(alice.browser)
    acme.members.remove(alice.user)  # while alice is on Datadog's consent page

    response = through_datadog(alice.browser, datadog, alice.dd_user, started.url)
    assert Connection.objects.count() == 0
    assert_refused(response)
    page = alice.browser.get(response["Location"])
    assert page.status_code == 403
    assert "may no longer connect" in page.content.decode()
    assert [c.path for c in datadog.calls] == []  # not even the code was exchanged
    assert started.row.used_at is not None


def test_a_user_removed_mid_reconnect_changes_nothing(
    datadog: FakeDatadog, acme_member: tuple[Tenant, Organization]
) -> None:
    alice, acme = acme_member
    connect_through(alice.browser, datadog, alice.dd_user)
    connection = Connection.objects.get()
    token = connection.access_token.reveal()  # type: ignore[union-attr]
    started = alice.browser.post(f"/datadog/connections/{connection.pk}/reconnect/")
    acme.members.remove(alice.user)
    response = through_datadog(alice.browser, datadog, alice.dd_user, started["Location"])
    connection.refresh_from_db()
    assert connection.access_token.reveal() == token  # type: ignore[union-attr]
    assert_refused(response)


def test_a_member_still_in_the_owner_connects(
    datadog: FakeDatadog, acme_member: tuple[Tenant, Organization]
) -> None:
    alice, acme = acme_member
    assert connect_through(alice.browser, datadog, alice.dd_user)["Location"] == CONNECTED
    assert Connection.objects.get().owner == acme
