"""The journeys of issue 6, in Chromium, against the live server and a real qcluster."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from django_datadog_partner import connections
from django_datadog_partner.models import AuthorizationRequest, Connection, ConnectionStatus
from django_datadog_partner.sandbox.models import SandboxAPIKey, SandboxGrant, SandboxOrg
from tests.e2e_support import QCluster
from tests.testapp.models import Order, Organization

from .support import PASSWORD, Journey, Shot, eventually


def connection() -> Connection:
    return eventually(Connection.objects.first, "the connection")


def sandbox_org() -> SandboxOrg:
    return SandboxOrg.objects.get(name="Acme on Datadog")


def test_connect_then_an_order_change_arrives_in_the_sandbox(
    journey: Journey, acme: Organization, qcluster: QCluster
) -> None:
    journey.connect("ada")
    conn = connection()
    assert conn.status == ConnectionStatus.ACTIVE
    assert conn.owner == acme
    assert SandboxAPIKey.objects.filter(org=sandbox_org(), revoked_at__isnull=True).count() == 1

    order = Order.objects.create(organization=acme, number="1001", total=12)
    order.status = "paid"
    order.save()

    page = journey.page

    def event_shown() -> bool:
        page.goto(f"{journey.base}/sandbox/orgs/{sandbox_org().pk}/")
        return page.locator("tr.event").count() >= 2

    eventually(event_shown, "the order events on the sandbox page", timeout=30)
    events = page.inner_text("table[data-kind=events]")
    assert "Order updated: 1001" in events and "organization: Acme" in events
    journey.shot("event-arrived")


def test_deny_shows_the_denied_page_and_creates_nothing(journey: Journey) -> None:
    journey.open_tile()
    journey.click_connect_accounts()
    journey.host_login("ada")
    journey.confirm()
    journey.sandbox_login()
    journey.consent(approve=False)
    journey.page.wait_for_selector("h1")
    journey.shot("denied")
    assert "denied" in journey.page.inner_text("body").lower()
    assert not Connection.objects.exists()
    assert "code=" not in journey.page.url


def test_expired_state_is_refused_without_contacting_datadog(journey: Journey) -> None:
    journey.open_tile()
    journey.click_connect_accounts()
    journey.host_login("ada")
    journey.confirm()
    journey.sandbox_login()
    journey.page.wait_for_selector("#authorize")
    AuthorizationRequest.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    journey.consent()
    journey.page.wait_for_selector("h1")
    journey.shot("expired")
    assert "expired" in journey.page.inner_text("body").lower()
    assert not Connection.objects.exists()
    assert not SandboxGrant.objects.exists()


def test_uninstall_is_noticed_by_the_health_check_and_reconnect_works(journey: Journey) -> None:
    journey.connect("ada")
    conn = connection()
    page = journey.page
    page.goto(f"{journey.base}/sandbox/orgs/{sandbox_org().pk}/")
    journey.shot("grants")
    page.click("text=Revoke this grant")
    page.wait_for_selector("text=revoked")

    report = connections.check_health(conn)
    assert not report.healthy
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.NEEDS_RECONNECT

    page.goto(f"{journey.base}/datadog/connections/{conn.pk}/")
    journey.shot("needs-reconnect")
    page.click("button:has-text('Reconnect')")
    if page.locator("text=Continue to Datadog").count():
        journey.confirm()
    journey.consent()
    page.wait_for_selector("text=You may now close this tab.")
    journey.shot("reconnected")
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.ACTIVE
    assert Connection.objects.count() == 1
    assert connections.check_health(conn).healthy


def test_revoked_api_key_marks_the_connection_rejected(
    journey: Journey, acme: Organization, qcluster: QCluster
) -> None:
    journey.connect("ada")
    conn = connection()
    page = journey.page
    page.goto(f"{journey.base}/sandbox/orgs/{sandbox_org().pk}/")
    page.click("#revoke-api-key")
    page.wait_for_selector("tr.api-key >> text=revoked")
    journey.shot("api-key-revoked")

    Order.objects.create(organization=acme, number="2001", total=5)

    def rejected() -> bool:
        conn.refresh_from_db()
        return conn.status == ConnectionStatus.API_KEY_REJECTED

    eventually(rejected, "the connection to become api_key_rejected", timeout=30)
    page.goto(f"{journey.base}/datadog/connections/{conn.pk}/")
    journey.shot("api-key-rejected")


def test_admin_revoke_then_reconnect_from_the_admin_link(journey: Journey, ada: Any) -> None:
    journey.connect("ada")
    conn = connection()
    ada.is_staff = ada.is_superuser = True
    ada.save()
    page = journey.page
    page.goto(f"{journey.base}/admin/datadog_partner/connection/{conn.pk}/change/")
    journey.shot("admin-connection")
    page.click("a:has-text('Revoke')")
    journey.shot("admin-confirm")
    page.click("text=Yes, revoke")
    page.wait_for_selector(".messagelist")
    journey.shot("admin-revoked")
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.REVOKED
    assert SandboxGrant.objects.get().revoked_at is not None

    # Reconnect from the admin's link: a plain URL of the connection page, login still needed.
    page.goto(f"{journey.base}/admin/datadog_partner/connection/{conn.pk}/change/")
    # Without clipboard access the button's link shows the link to copy by hand.
    page.goto(journey.base + page.get_attribute("a:has-text('Copy reconnect link')", "href"))
    link = page.input_value(f"#reconnect-link-{conn.pk}")
    assert link == f"{journey.base}/datadog/connections/{conn.pk}/"
    journey.shot("admin-reconnect-link")
    page.goto(link)
    # The customer's page after the admin's revoke: done by "our support team", and the
    # same last step as a self-service disconnect.
    text = page.inner_text("main")
    assert "Disconnected by our support team." in text
    assert "remove the API key in Datadog" in text and text.count("OAuth Client API Key") == 1
    journey.shot("revoked-by-support")
    page.click("button:has-text('Connect again')")  # the label for a revoked connection
    if page.locator("text=Continue to Datadog").count():
        journey.confirm()
    journey.consent()
    page.wait_for_selector("text=Datadog has not given us an API key yet")
    journey.shot("admin-reconnected")
    # Revoking wiped our copy of the key, but Datadog still holds the org's key (shown
    # once): the page gives the recovery steps, which the user follows.
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.KEY_MISSING
    page.goto(f"{journey.base}/sandbox/orgs/{sandbox_org().pk}/")
    page.click("#revoke-api-key")
    page.wait_for_selector("tr.api-key >> text=revoked")
    page.goto(link)
    page.click("button:has-text('Create the API key again')")
    page.wait_for_selector("text=The API key is in place")
    journey.shot("admin-key-created")
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.ACTIVE
    assert conn.api_key is not None
    assert Connection.objects.count() == 1


def test_sandbox_error_page_sign_in_and_consent_in_a_real_browser(
    page: Any, dd_live: str, shot: Shot
) -> None:
    """The sandbox's own pages, alone: no redirect for an unknown client; CSRF-protected
    sign-in and consent forms work in Chromium and send the code back."""
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    query = (
        "response_type=code&client_id={client}&redirect_uri={redirect}&state=st4te"
        f"&code_challenge={challenge}&code_challenge_method=S256"
    )
    redirect = dd_live + "/datadog/callback/"
    page.goto(
        f"{dd_live}/sandbox/oauth2/v1/authorize?" + query.format(client="nope", redirect=redirect)
    )
    shot("authorize-error")
    assert "invalid_request - Invalid client_id parameter value" in page.inner_text("#oauth-error")
    assert "/sandbox/oauth2/v1/authorize" in page.url

    callbacks: list[str] = []
    page.on("request", lambda request: callbacks.append(request.url))
    page.goto(
        f"{dd_live}/sandbox/oauth2/v1/authorize?"
        + query.format(client="test-client-id", redirect=redirect)
    )
    Journey(page, dd_live, shot).sandbox_login()
    Journey(page, dd_live, shot).consent()
    sent_back = eventually(
        lambda: [url for url in callbacks if url.startswith(redirect + "?")], "the callback"
    )
    assert "code=" in sent_back[0]
    assert "state=st4te" in sent_back[0]
    assert "domain=sandbox.localhost" in sent_back[0]


def test_vendor_staff_may_disconnect_but_not_reconnect_a_customers_connection(
    journey: Journey,
) -> None:
    """A vendor employee's Datadog login must never bind a customer's connection."""
    journey.connect("ada")
    conn = connection()
    users = get_user_model().objects
    users.create_user("sam", password=PASSWORD, is_staff=True)
    vic = users.create_user("vic", password=PASSWORD, is_staff=True)
    vic.user_permissions.add(Permission.objects.get(codename="manage_connection"))
    page, url = journey.page, f"{journey.base}/datadog/connections/{conn.pk}/"

    for username in ("sam", "vic"):
        page.context.clear_cookies()
        page.goto(url)
        journey.host_login(username)
        page.wait_for_load_state()
        journey.shot(f"connection-page-as-{username}")
        if username == "sam":
            assert page.inner_text("h1") == "Not found"  # the package's 404, in its layout
    assert page.locator("button:has-text('Reconnect')").count() == 0
    assert page.locator("text=Only a member of the connection's owner").count() == 1
    page.click("a:has-text('Disconnect…')")
    page.click("button:has-text('Yes, disconnect')")
    page.wait_for_selector(".notice")
    journey.shot("disconnected-by-vendor")
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.REVOKED
