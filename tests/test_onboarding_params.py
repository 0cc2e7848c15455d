"""Onboarding with only ``domain`` or only ``site``, as older tiles and pages send it.

The missing one is derived from the site table where the table allows one answer; where it
allows several, the site picker offers those regions with the given ``site`` kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.test import Client

from django_datadog_partner import failures
from django_datadog_partner.models import AuthorizationRequest, Connection, ConnectionStatus
from django_datadog_partner.regions import DATADOG_SITES
from django_datadog_partner.testing import FakeDatadog
from tests.connect_support import CONNECTED, ONBOARDING, signed_in, through_datadog

pytestmark = pytest.mark.django_db

DATADOGHQ_COM_REGIONS = {"US1", "US3", "US5", "AP1", "AP2", "UK1"}


def onboarding(client: Client, **params: str) -> Any:
    return client.get(f"{ONBOARDING}?{urlencode(params)}")


def confirm(client: Client, **params: str) -> tuple[str, AuthorizationRequest]:
    """Onboarding with ``params``, confirmed: the authorize URL and the pending request."""
    url = f"{ONBOARDING}?{urlencode(params)}"
    page = client.get(url)
    assert page.status_code == 200, page.content[:300]
    response = client.post(url, {"owner": page.context["choices"][0][0]})
    assert response.status_code == 302
    location = response["Location"]
    state = dict(parse_qsl(urlsplit(location).query))["state"]
    return location, AuthorizationRequest.objects.get(state=state)


@pytest.mark.parametrize("site", DATADOG_SITES, ids=lambda s: s.name)
def test_domain_alone_leads_to_its_regions_web_address(alice: Any, site: Any) -> None:
    location, pending = confirm(signed_in(alice), domain=site.domain)
    assert location.startswith(f"{site.web_url}/oauth2/v1/authorize?")
    assert (pending.domain, pending.site) == (site.domain, site.web_url)


@pytest.mark.parametrize(
    ("given", "domain", "authorize_host"),
    [
        ("us3.datadoghq.com", "us3.datadoghq.com", "us3.datadoghq.com"),
        ("https://app.datadoghq.eu", "datadoghq.eu", "app.datadoghq.eu"),
        ("https://uk1.datadoghq.com/", "uk1.datadoghq.com", "uk1.datadoghq.com"),
        ("us2.ddog-gov.com", "us2.ddog-gov.com", "us2.ddog-gov.com"),
        # US1's web host is US1's in the table (users may switch region there, and the
        # callback's domain then decides the token host).
        ("app.datadoghq.com", "datadoghq.com", "app.datadoghq.com"),
        ("https://app.ddog-gov.com", "ddog-gov.com", "app.ddog-gov.com"),
        # Only EU1 lives under datadoghq.eu: its custom subdomains are EU1's.
        ("https://acme.datadoghq.eu", "datadoghq.eu", "acme.datadoghq.eu"),
    ],
)
def test_site_alone_in_one_region_derives_the_domain(
    alice: Any, given: str, domain: str, authorize_host: str
) -> None:
    location, pending = confirm(signed_in(alice), site=given)
    assert urlsplit(location).netloc == authorize_host
    assert pending.domain == domain


@pytest.mark.parametrize(
    ("given", "regions"),
    [
        ("https://acme.datadoghq.com", DATADOGHQ_COM_REGIONS),
        ("acme.ddog-gov.com", {"US1-FED", "US2-FED"}),
    ],
)
def test_site_alone_in_several_regions_shows_those_regions_with_the_site_kept(
    alice: Any, given: str, regions: set[str]
) -> None:
    client = signed_in(alice)
    page = onboarding(client, site=given)
    assert page.status_code == 200
    host = urlsplit(given if "://" in given else f"https://{given}").netloc
    assert f"Which Datadog region is {host} in?" in page.content.decode()
    offered = {site.name: link for site, link in page.context["sites"]}
    assert set(offered) == regions
    assert AuthorizationRequest.objects.count() == 0
    for name, link in offered.items():
        assert dict(parse_qsl(urlsplit(link).query))["site"] == f"https://{host}", name

    picked = next(s for s in DATADOG_SITES if s.name == sorted(regions)[-1])
    location, pending = confirm(client, **dict(parse_qsl(urlsplit(offered[picked.name]).query)))
    assert urlsplit(location).netloc == host  # the organisation's own sign-in address
    assert (pending.domain, pending.site) == (picked.domain, f"https://{host}")


@pytest.mark.parametrize(
    "params",
    [
        {"domain": "evil.example"},
        {"domain": "api.datadoghq.com"},
        {"site": "https://evil.example"},
        {"site": "a.b.datadoghq.com"},
        {"site": "api.datadoghq.com"},
        {"site": "https://"},
        {"site": "127.0.0.1"},
        {"domain": " ", "site": "evil.example"},
        {"domain": "evil.example", "site": " "},
    ],
)
def test_a_single_hostile_value_gets_the_invalid_site_page(alice: Any, params: dict) -> None:
    response = onboarding(signed_in(alice), **params)
    assert response.status_code == 400
    assert response.context["reason"] == failures.INVALID_SITE
    assert AuthorizationRequest.objects.count() == 0


@pytest.mark.parametrize("params", [{"domain": ""}, {"site": " "}, {"domain": "", "site": ""}])
def test_blank_values_count_as_missing(alice: Any, params: dict) -> None:
    page = onboarding(signed_in(alice), **params)
    assert page.status_code == 200
    assert len(page.context["sites"]) == len(DATADOG_SITES)
    assert page.context["web_site"] is None


@pytest.fixture
def datadog() -> Iterator[FakeDatadog]:
    with FakeDatadog(domain="datadoghq.eu") as fake:
        yield fake


def test_a_tile_that_sends_only_site_connects_end_to_end(alice: Any, datadog: FakeDatadog) -> None:
    client = signed_in(alice)
    user = datadog.create_user(datadog.create_org("Acme"), "ada")
    location, _pending = confirm(client, site="https://app.datadoghq.eu")
    assert through_datadog(client, datadog, user, location)["Location"] == CONNECTED
    (connection,) = Connection.objects.all()
    assert (connection.domain, connection.site) == ("datadoghq.eu", "https://app.datadoghq.eu")
    assert connection.status == ConnectionStatus.ACTIVE
