"""``django_datadog_partner.testing``: the fake Datadog host projects use in their tests."""

from __future__ import annotations

import gzip
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import responses as responses_lib
from django.contrib.auth import get_user_model
from django.utils import timezone

from django_datadog_partner import connections, crypto, oauth
from django_datadog_partner.client import DatadogClient
from django_datadog_partner.conf import app_settings
from django_datadog_partner.exceptions import RetryableError
from django_datadog_partner.models import Connection, ConnectionStatus
from django_datadog_partner.regions import DATADOG_SITES, get_site
from django_datadog_partner.testing import FakeDatadog, make_connection
from tests.testapp.models import Organization

pytestmark = pytest.mark.django_db


def key_of(connection: Connection) -> str:
    assert connection.api_key is not None
    return connection.api_key.reveal()


@pytest.mark.parametrize("site", DATADOG_SITES, ids=lambda site: site.name)
def test_connection_factory_gives_a_working_key_on_each_site(
    fake: FakeDatadog, acme: Organization, site: object
) -> None:
    domain = site.domain  # type: ignore[attr-defined]
    connection = fake.connection(owner=acme, domain=domain)
    client = DatadogClient(domain)
    answer = client.request(
        "POST",
        client.api_url("/api/v1/events"),
        headers={"DD-API-KEY": key_of(connection)},
        json={"title": "Order 1 updated", "text": "paid"},
    )
    assert answer.status_code == 202
    assert fake.events(connection) == [{"title": "Order 1 updated", "text": "paid"}]
    assert [(c.domain, c.path) for c in fake.calls] == [(domain, "/api/v1/events")]
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.owner == acme
    assert connection.site == get_site(domain).web_url


def test_keys_only_work_at_their_own_site(fake: FakeDatadog, acme: Organization) -> None:
    connection = fake.connection(owner=acme, domain="datadoghq.eu")
    client = DatadogClient("datadoghq.com")
    answer = client.request(
        "GET", client.api_url("/api/v1/validate"), headers={"DD-API-KEY": key_of(connection)}
    )
    assert answer.status_code == 403


def test_logs_intake_host_and_gzip(fake: FakeDatadog, acme: Organization) -> None:
    connection = fake.connection(owner=acme)
    client = DatadogClient("datadoghq.com")
    answer = client.request(
        "POST",
        client.logs_url("/api/v2/logs"),
        headers={
            "DD-API-KEY": key_of(connection),
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
        data=gzip.compress(json.dumps([{"message": "paid", "service": "shop"}]).encode()),
    )
    assert answer.status_code == 202
    assert fake.logs(connection) == [{"message": "paid", "service": "shop"}]
    assert fake.calls[0].url.startswith("https://http-intake.logs.datadoghq.com/")


def test_connections_of_one_org_share_its_key_and_tenants_stay_apart(
    fake: FakeDatadog, acme: Organization
) -> None:
    other = Organization.objects.create(name="Other")
    first = fake.connection(owner=acme)
    shared = fake.connection(owner=other, org=fake.org_of(first))
    separate = fake.connection(owner=Organization.objects.create(name="Third"))
    assert key_of(first) == key_of(shared) != key_of(separate)
    assert first.dd_org_id == shared.dd_org_id != separate.dd_org_id


def test_oauth_round_trip_with_the_projects_oauth_module(fake: FakeDatadog) -> None:
    site = get_site("datadoghq.com")
    redirect_uri = "https://vendor.example/datadog/callback/"
    verifier, challenge = oauth.new_pkce_pair()
    url = oauth.authorization_url(
        site.web_url, state="s1", code_challenge=challenge, redirect_uri=redirect_uri
    )
    org = fake.create_org("Acme")
    user = fake.create_user(org, "Ada")
    callback = fake.authorize(url, user)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    tokens = oauth.exchange_code(site, code=code, code_verifier=verifier, redirect_uri=redirect_uri)
    rotated = oauth.refresh_tokens(site, tokens.refresh_token or "")
    assert rotated.refresh_token != tokens.refresh_token
    oauth.revoke_token(site, rotated.refresh_token or "", "refresh_token", bearer=None)
    with pytest.raises(oauth.OAuthError):
        oauth.refresh_tokens(site, rotated.refresh_token or "")


def test_lifecycle_refresh_and_health_notice_an_uninstall(
    fake: FakeDatadog, acme: Organization
) -> None:
    connection = fake.connection(owner=acme)
    assert connections.refresh(connection, force=True)
    assert connections.check_health(connection).healthy
    fake.uninstall(fake.org_of(connection))
    report = connections.check_health(connection)
    assert not report.healthy
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.NEEDS_RECONNECT


def test_revoked_key_is_noticed_by_the_health_check(fake: FakeDatadog, acme: Organization) -> None:
    connection = fake.connection(owner=acme)
    fake.revoke_api_key(fake.org_of(connection))
    connections.check_health(connection)
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.API_KEY_REJECTED


def test_slow_answers_time_out_without_sleeping(fake: FakeDatadog, acme: Organization) -> None:
    connection = fake.connection(owner=acme)
    fake.set_faults(fake.org_of(connection), slow_seconds=60)
    client = DatadogClient("datadoghq.com")
    with pytest.raises(RetryableError):
        client.request(
            "GET", client.api_url("/api/v1/validate"), headers={"DD-API-KEY": key_of(connection)}
        )
    assert fake.delays == [60]


def test_joins_an_existing_requests_mock(acme: Organization) -> None:
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeDatadog(mock=rsps)
        connection = fake.connection(owner=acme)
        client = DatadogClient("datadoghq.com")
        answer = client.request(
            "GET", client.api_url("/api/v1/validate"), headers={"DD-API-KEY": key_of(connection)}
        )
        assert answer.json() == {"valid": True}


def test_factory_accepts_other_states_and_users(fake: FakeDatadog, acme: Organization) -> None:
    user = get_user_model().objects.create(username="ada")
    connection = fake.connection(owner=acme, status=ConnectionStatus.KEY_MISSING, connected_by=user)
    assert (connection.status, connection.connected_by) == (ConnectionStatus.KEY_MISSING, user)


# --- make_connection: a connection in any state, without a fake -------------------------------


def test_make_connection_gives_each_connection_its_own_key_and_an_owner() -> None:
    first, second = make_connection(), make_connection()
    assert key_of(first) != key_of(second)
    assert first.api_key_last4 == key_of(first)[-4:]
    assert first.api_key_fingerprint == crypto.fingerprint(key_of(first))
    assert isinstance(first.owner, get_user_model()) and first.owner != second.owner
    stored = Connection.objects.get(pk=first.pk)
    assert (stored.status, stored.domain, stored.site) == (
        ConnectionStatus.ACTIVE,
        "datadoghq.com",
        get_site("datadoghq.com").web_url,
    )


def test_make_connection_takes_a_state_a_site_and_any_field(acme: Organization) -> None:
    expired = make_connection(acme, domain="datadoghq.eu", expires_in=-10, dd_org_name="Globex")
    assert expired.owner == acme and expired.site == get_site("datadoghq.eu").web_url
    assert expired.expires_at is not None and expired.expires_at < timezone.now()
    keyless = make_connection(status=ConnectionStatus.KEY_MISSING, api_key=None)
    stored = Connection.objects.get(pk=keyless.pk)
    assert stored.api_key is None and (stored.api_key_last4, stored.api_key_fingerprint) == ("", "")
    unknown = make_connection(domain="old.example")
    assert unknown.site == "https://app.old.example"


# --- partner_settings: the tests' one way to change DATADOG_PARTNER ---------------------------


def test_partner_settings_merges_keys_for_the_test_or_a_block(partner_settings) -> None:
    client_id = app_settings.CLIENT_ID
    partner_settings(SOURCE_TYPE_NAME="acme")
    with partner_settings(SOURCE_TYPE_NAME="globex"):
        assert ("globex", client_id) == (app_settings.SOURCE_TYPE_NAME, app_settings.CLIENT_ID)
    assert app_settings.SOURCE_TYPE_NAME == "acme"
