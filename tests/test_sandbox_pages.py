"""The sandbox server: tile, sign-in, consent page, machine endpoints, org pages, start-up guard."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from django.urls import reverse

from django_datadog_partner.sandbox import SANDBOX_DOMAIN, site_entry
from django_datadog_partner.sandbox.control import Sandbox
from django_datadog_partner.sandbox.models import (
    SandboxAPIKey,
    SandboxGrant,
    SandboxOrg,
    SandboxUser,
)
from django_datadog_partner.sandbox.views.session import SESSION_KEY

pytestmark = pytest.mark.django_db

BASE = "http://testserver/sandbox"
CALLBACK = "https://vendor.example/datadog/callback/"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def _sandbox_site(partner_settings: Any) -> None:
    partner_settings(
        EXTRA_SITES={SANDBOX_DOMAIN: site_entry(BASE)},
    )


@pytest.fixture
def signed_in(client: Client) -> SandboxUser:
    org = SandboxOrg.objects.create(name="Acme")
    user = SandboxUser.objects.create(org=org, name="Ada")
    session = client.session
    session[SESSION_KEY] = user.pk
    session.save()
    return user


def authorize_url(**overrides: str) -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": "test-client-id",
        "redirect_uri": CALLBACK,
        "state": "st4te",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        **overrides,
    }
    return "/sandbox/oauth2/v1/authorize?" + urlencode(params), verifier


def test_tile_links_to_the_onboarding_url_with_domain_and_site(client: Client) -> None:
    page = client.get("/sandbox/").content.decode()
    onboarding = "https://vendor.example" + reverse("datadog_partner:onboarding")
    expected = onboarding + "?" + urlencode({"domain": SANDBOX_DOMAIN, "site": BASE})
    assert page.count(f'href="{expected.replace("&", "&amp;")}"') == 2  # Connect + Test


def test_tile_explains_a_missing_extra_sites_entry(client: Client, partner_settings: Any) -> None:
    partner_settings(EXTRA_SITES={})
    page = client.get("/sandbox/").content.decode()
    assert 'No <code>DATADOG_PARTNER["EXTRA_SITES"]</code> entry points at this sandbox' in page
    assert "connect-accounts" not in page


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_id": "nope"}, "invalid_request - Invalid client_id parameter value"),
        ({"redirect_uri": "https://evil.example/"}, "invalid_request - Mismatching redirect URI"),
    ],
)
def test_unknown_client_or_redirect_shows_an_error_page_without_redirect(
    client: Client, signed_in: SandboxUser, overrides: dict[str, str], message: str
) -> None:
    url, _verifier = authorize_url(**overrides)
    response = client.get(url)
    assert response.status_code == 400
    assert "Location" not in response
    assert message in response.content.decode()


def test_authorize_asks_for_a_sandbox_user_then_consent_then_redirects(client: Client) -> None:
    url, verifier = authorize_url()
    to_login = client.get(url)
    assert to_login.status_code == 302
    assert to_login["Location"].startswith("/sandbox/login/?next=")
    created = client.post(
        "/sandbox/login/",
        {"create": "1", "name": "Ada", "org_name": "Acme", "next": url},
    )
    assert created["Location"] == url
    consent = client.get(url)
    assert b"Authorize access to your Datadog organization" in consent.content
    assert b"Acme" in consent.content
    callback = client.post(url, {"authorize": "1"})
    params = parse_qs(urlsplit(callback["Location"]).query)
    assert callback["Location"].startswith(CALLBACK + "?")
    assert set(params) == {"code", "state", "domain", "site", "dd_oid", "dd_org_name"}
    assert params["domain"] == [SANDBOX_DOMAIN]
    assert params["site"] == [BASE]
    token = client.post(
        "/sandbox/oauth2/v1/token",
        urlencode(
            {
                "grant_type": "authorization_code",
                "client_id": "test-client-id",
                "client_secret": "test-client-secret",
                "code": params["code"][0],
                "redirect_uri": CALLBACK,
                "code_verifier": verifier,
            }
        ),
        content_type=FORM,
    )
    assert token.status_code == 200
    assert token.json()["token_type"] == "Bearer"
    assert SandboxGrant.objects.get().user.name == "Ada"


def test_existing_user_signs_in_by_picking_it(client: Client) -> None:
    org = SandboxOrg.objects.create(name="Acme")
    user = SandboxUser.objects.create(org=org, name="Ada")
    response = client.post("/sandbox/login/", {"user": user.pk, "next": "https://evil.example/"})
    assert response["Location"] == "/sandbox/"
    assert client.session[SESSION_KEY] == user.pk


def test_deny_sends_access_denied(client: Client, signed_in: SandboxUser) -> None:
    url, _verifier = authorize_url()
    response = client.post(url, {"deny": "1"})
    params = parse_qs(urlsplit(response["Location"]).query)
    assert params["error"] == ["access_denied"]
    assert params["state"] == ["st4te"]


def test_org_params_on_the_callback_unless_bare(client: Client, signed_in: SandboxUser) -> None:
    url, _verifier = authorize_url()
    params = parse_qs(urlsplit(client.post(url, {"authorize": "1"})["Location"]).query)
    assert params["dd_oid"] == [str(signed_in.org.public_id)]
    assert params["dd_org_name"] == ["Acme"]
    SandboxOrg.objects.update(bare_callback=True)
    params = parse_qs(urlsplit(client.post(url, {"authorize": "1"})["Location"]).query)
    assert set(params) == {"code", "state", "domain"}


def test_user_orgs_over_http(client: Client, signed_in: SandboxUser) -> None:
    sandbox = Sandbox()
    grant = sandbox.grant(
        sandbox.store.get_org(signed_in.org.pk), sandbox.store.get_user(signed_in.pk)
    )
    response = Client().get(
        f"/sandbox/api/v2/users/{signed_in.public_id}/orgs",
        HTTP_AUTHORIZATION=f"Bearer {grant.access_token}",
    )
    assert response.status_code == 200
    assert response.json()["included"][0]["attributes"]["name"] == "Acme"


def test_consent_post_needs_csrf_but_machine_endpoints_do_not(signed_in: SandboxUser) -> None:
    strict = Client(enforce_csrf_checks=True)
    session = strict.session
    session[SESSION_KEY] = signed_in.pk
    session.save()
    url, _verifier = authorize_url()
    assert strict.post(url, {"authorize": "1"}).status_code == 403
    answer = strict.post(
        "/sandbox/oauth2/v1/revoke",
        urlencode(
            {"client_id": "test-client-id", "client_secret": "test-client-secret", "token": "x"}
        ),
        content_type=FORM,
    )
    assert answer.status_code == 200
    assert strict.post("/sandbox/orgs/1/revoke-api-key/").status_code == 403


def test_org_page_shows_what_arrived_and_revokes(client: Client) -> None:
    sandbox = Sandbox()
    org = sandbox.create_org("Acme")
    key = sandbox.create_api_key(org)
    grant = sandbox.grant(org)
    sent = client.post(
        "/sandbox/api/v1/events",
        {"title": "Order 7 paid", "text": "total 12.00", "tags": ["model:order"]},
        content_type="application/json",
        headers={"DD-API-KEY": key},
    )
    assert sent.status_code == 202
    client.post(
        "/sandbox/api/v2/logs",
        [{"message": "payment ok", "service": "shop"}],
        content_type="application/json",
        headers={"DD-API-KEY": key},
    )
    page = client.get(f"/sandbox/orgs/{org.id}/").content.decode()
    assert "Order 7 paid" in page
    assert "payment ok" in page
    listing = client.get("/sandbox/orgs/").content.decode()
    assert "Acme" in listing

    client.post(f"/sandbox/grants/{grant.grant_id}/revoke/")
    assert SandboxGrant.objects.get(pk=grant.grant_id).revoked_at is not None
    client.post(f"/sandbox/orgs/{org.id}/revoke-api-key/")
    assert SandboxAPIKey.objects.get().revoked_at is not None
    validate = client.get("/sandbox/api/v1/validate", headers={"DD-API-KEY": key})
    assert validate.status_code == 403
    client.post(f"/sandbox/orgs/{org.id}/restore-api-key/")  # within Datadog's 7 days
    assert SandboxAPIKey.objects.get().revoked_at is None
    validate = client.get("/sandbox/api/v1/validate", headers={"DD-API-KEY": key})
    assert validate.status_code == 200


def test_fault_switches_from_the_page(client: Client) -> None:
    sandbox = Sandbox()
    org = sandbox.create_org("Acme")
    key = sandbox.create_api_key(org)
    client.post(
        f"/sandbox/orgs/{org.id}/faults/",
        {
            "intake_fault": "429",
            "intake_fault_times": "1",
            "rate_limit_reset": "9",
            "slow_seconds": "0",
        },
    )
    answer = client.post(
        "/sandbox/api/v2/series",
        {"series": [{"metric": "m", "points": []}]},
        content_type="application/json",
        headers={"DD-API-KEY": key},
    )
    assert answer.status_code == 429
    assert answer["X-RateLimit-Reset"] == "9"
    invalid = client.post(f"/sandbox/orgs/{org.id}/faults/", {"rate_limit_reset": "-1"})
    assert invalid.status_code == 400


def test_the_sandbox_refuses_to_start_outside_debug_unless_forced(settings: Any) -> None:
    config = apps.get_app_config("datadog_partner_sandbox")
    forced = settings.DATADOG_PARTNER
    settings.DATADOG_PARTNER = {k: v for k, v in forced.items() if k != "SANDBOX_FORCE"}
    with override_settings(DEBUG=False), pytest.raises(ImproperlyConfigured, match="DEBUG is off"):
        config.ready()
    with override_settings(DEBUG=True):
        config.ready()
    settings.DATADOG_PARTNER = forced
    config.ready()


def test_datadogs_api_keys_page_leads_to_the_signed_in_users_org(
    client: Client, signed_in: SandboxUser
) -> None:
    response = client.get("/sandbox/organization-settings/api-keys")
    assert response["Location"] == f"/sandbox/orgs/{signed_in.org_id}/#api-keys"
    client.post("/sandbox/logout/")
    assert client.get("/sandbox/organization-settings/api-keys")["Location"].startswith(
        "/sandbox/login/?next="
    )


def test_check_e030_when_the_sandbox_urls_are_not_included(settings: Any) -> None:
    from django_datadog_partner.sandbox.checks import check_sandbox_urls

    assert check_sandbox_urls() == []
    settings.ROOT_URLCONF = type("NoSandboxUrls", (), {"urlpatterns": []})
    errors = check_sandbox_urls()
    assert [error.id for error in errors] == ["datadog_partner.E030"]
    assert 'include("django_datadog_partner.sandbox.urls")' in (errors[0].hint or "")


SANDBOX_PAGES = ("/sandbox/", "/sandbox/orgs/", "/sandbox/login/")


def test_the_header_ignores_the_hosts_own_login(client: Client, django_user_model: Any) -> None:
    client.force_login(django_user_model.objects.create_user("shopper"))
    for page in SANDBOX_PAGES:
        html = client.get(page).content.decode()
        assert "Signed in as" not in html, page
        assert 'href="/sandbox/login/">Sign in</a>' in html, page


def test_the_header_names_the_sandbox_user_on_every_page(
    client: Client, signed_in: SandboxUser, django_user_model: Any
) -> None:
    client.force_login(django_user_model.objects.create_user("shopper"))
    org_page = reverse("datadog_partner_sandbox:org", args=[signed_in.org_id])
    for page in (*SANDBOX_PAGES, org_page):
        assert "Signed in as Ada (Acme)" in client.get(page).content.decode(), page
    consent = client.get(authorize_url()[0]).content.decode()
    assert "Signed in as Ada (Acme)" in consent
