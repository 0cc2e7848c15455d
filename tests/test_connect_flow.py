"""The whole connect flow through the real views, with Datadog faked by ``responses``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from django.contrib.contenttypes.models import ContentType
from django.test import Client

import django_datadog_partner
from django_datadog_partner.models import AuthorizationRequest, Connection, ConnectionStatus
from django_datadog_partner.regions import DATADOG_SITES, get_site
from django_datadog_partner.signals import connection_established
from tests.connect_support import (
    API_KEY,
    CONNECTED,
    ONBOARDING,
    REDIRECT_URI,
    api,
    callback,
    fake_datadog,
    key_json,
    make_user,
    requests_made,
    s256,
    signed_in,
    start,
    token_form,
    token_json,
)
from tests.testapp.models import Organization

pytestmark = pytest.mark.django_db

MARKETPLACE = api("datadoghq.com", "/api/v2/api_keys/marketplace")

FLOW_SITES = [(s.domain, s.web_host, s.domain, s.web_host) for s in DATADOG_SITES] + [
    # Custom subdomains say nothing about the region: the callback's domain decides.
    ("datadoghq.com", "acme.datadoghq.com", "us3.datadoghq.com", "acme.datadoghq.com"),
    ("datadoghq.eu", "acme.datadoghq.eu", "datadoghq.eu", "acme.datadoghq.eu"),
    # app.datadoghq.com is where users may switch region (pup#550); the stored site
    # then follows the region.
    ("datadoghq.com", "app.datadoghq.com", "us5.datadoghq.com", "us5.datadoghq.com"),
]


@pytest.fixture
def established() -> Any:
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append(kwargs)

    connection_established.connect(receiver)
    yield calls
    connection_established.disconnect(receiver)


def assert_flow_headers(response: Any, referrer: str = "no-referrer") -> None:
    """``no-referrer`` after the callback; pages with forms use ``same-origin`` because
    Chromium sends ``Origin: null`` (refused by CSRF) under ``no-referrer``."""
    assert "no-store" in response["Cache-Control"]
    assert response["Referrer-Policy"] == referrer
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(("domain", "web_host", "callback_domain", "stored_host"), FLOW_SITES)
def test_whole_flow_for_every_site(
    alice: Any,
    mocked_http: responses.RequestsMock,
    established: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
    domain: str,
    web_host: str,
    callback_domain: str,
    stored_host: str,
) -> None:
    client = signed_in(alice)
    page = client.get(f"{ONBOARDING}?domain={domain}&site={web_host}")
    assert page.status_code == 200
    assert_flow_headers(page, "same-origin")
    assert f"Connect alice to Datadog {get_site(domain).name}?" in page.content.decode()
    assert AuthorizationRequest.objects.count() == 0  # GET creates nothing

    started = start(client, domain, web_host)
    parts = urlsplit(started.url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", web_host, "/oauth2/v1/authorize")
    assert parse_qsl(parts.query) == [
        ("response_type", "code"),
        ("client_id", "test-client-id"),
        ("redirect_uri", REDIRECT_URI),
        ("state", started.state),
        ("code_challenge", started.challenge),
        ("code_challenge_method", "S256"),
    ]
    assert len(started.state) >= 43
    assert started.row.domain == domain

    fake_datadog(mocked_http, callback_domain)
    with django_capture_on_commit_callbacks(execute=True):
        response = callback(client, started.state, "code-1", domain=callback_domain)
    assert response.status_code == 302
    assert response["Location"] == CONNECTED
    assert_flow_headers(response)

    form = token_form(mocked_http)
    assert form == {
        "grant_type": "authorization_code",
        "client_id": "test-client-id",
        "client_secret": "test-client-secret",
        "code": "code-1",
        "code_verifier": form["code_verifier"],
        "redirect_uri": REDIRECT_URI,
    }
    assert s256(form["code_verifier"]) == started.challenge
    api_host = f"api.{callback_domain}"
    assert requests_made(mocked_http) == [
        ("POST", api_host, "/oauth2/v1/token"),
        ("POST", api_host, "/api/v2/api_keys/marketplace"),
    ]
    assert mocked_http.calls[1].request.headers["Authorization"] == "Bearer access-1"

    connection = Connection.objects.get()
    assert connection.owner == alice
    assert connection.connected_by == alice
    assert (connection.domain, connection.site) == (callback_domain, f"https://{stored_host}")
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.access_token is not None and connection.refresh_token is not None
    assert connection.access_token.reveal() == "access-1"
    assert connection.refresh_token.reveal() == "refresh-1"
    assert connection.api_key is not None and connection.api_key.reveal() == API_KEY
    assert (connection.api_key_id, connection.api_key_last4) == ("key-id-1", API_KEY[-4:])
    assert connection.scopes == ["api_keys_write"]
    assert established == [
        {"signal": connection_established, "connection": connection, "created": True}
    ]

    done = client.get(CONNECTED)
    assert done.status_code == 200
    assert_flow_headers(done)
    text = done.content.decode()
    assert "You may now close this tab." in text
    assert 'href="/"' in text
    assert "An API key was created" in text
    assert "alice is connected to Datadog" in text
    assert f"Datadog site: {get_site(callback_domain).name}" in text  # no org named here
    assert started.row.code_verifier is None  # wiped after use


def test_callback_without_domain_uses_the_onboarding_domain(
    alice: Any, mocked_http: responses.RequestsMock
) -> None:
    client = signed_in(alice)
    started = start(client, "ap1.datadoghq.com", "ap1.datadoghq.com")
    fake_datadog(mocked_http, "ap1.datadoghq.com")
    assert callback(client, started.state)["Location"] == CONNECTED
    assert {host for _m, host, _p in requests_made(mocked_http)} == {"api.ap1.datadoghq.com"}


def test_scopes_are_requested_only_when_configured(alice: Any, partner_settings: Any) -> None:
    client = signed_in(alice)
    with partner_settings(SCOPES=["api_keys_write", "events_read"]):
        started = start(client)
    assert started.params["scope"] == "api_keys_write events_read"
    assert started.params["code_challenge_method"] == "S256"


def test_anonymous_onboarding_redirects_to_login_keeping_the_query(client: Client) -> None:
    response = client.get(f"{ONBOARDING}?domain=datadoghq.eu&site=app.datadoghq.eu")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/accounts/login/"
    assert dict(parse_qsl(location.query)) == {
        "next": "/datadog/connect/?domain=datadoghq.eu&site=app.datadoghq.eu"
    }
    assert AuthorizationRequest.objects.count() == 0


def test_only_the_confirmation_post_creates_the_request(alice: Any) -> None:
    client = signed_in(alice)
    url = f"{ONBOARDING}?domain=datadoghq.com&site=app.datadoghq.com"
    client.get(url)
    client.get(url)
    assert AuthorizationRequest.objects.count() == 0
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(alice)
    assert csrf_client.post(url, {"owner": "x"}).status_code == 403
    assert AuthorizationRequest.objects.count() == 0


# --- Owners ---------------------------------------------------------------------------


def orgs_of(user: Any) -> list[Organization]:
    return list(Organization.objects.filter(members=user).order_by("pk"))


@pytest.fixture
def two_orgs(alice: Any) -> list[Organization]:
    first = Organization.objects.create(name="Acme")
    second = Organization.objects.create(name="Globex")
    first.members.add(alice)
    second.members.add(alice)
    return [first, second]


def test_the_confirmation_offers_a_choice_of_owners(
    alice: Any,
    two_orgs: list[Organization],
    mocked_http: responses.RequestsMock,
    partner_settings: Any,
) -> None:
    client = signed_in(alice)
    url = f"{ONBOARDING}?domain=datadoghq.com&site=app.datadoghq.com"
    with partner_settings(OWNERS_FOR_USER=orgs_of):
        page = client.get(url)
        text = page.content.decode()
        assert "Connect to Datadog US1?" in text
        assert "Acme" in text and "Globex" in text
        choice = page.context["choices"][1][0]
        response = client.post(url, {"owner": choice})
        state = dict(parse_qsl(urlsplit(response["Location"]).query))["state"]
        fake_datadog(mocked_http)
        assert callback(client, state)["Location"] == CONNECTED
        assert Connection.objects.get().owner == two_orgs[1]
        # An owner the user may not connect is refused and creates nothing.
        stranger = Organization.objects.create(name="Initech")
        bad = f"{ContentType.objects.get_for_model(Organization).pk}:{stranger.pk}"
        refused = client.post(url, {"owner": bad})
    assert refused.status_code == 400
    assert AuthorizationRequest.objects.count() == 1


def test_a_user_without_owners_is_told_so(alice: Any, partner_settings: Any) -> None:
    client = signed_in(alice)
    with partner_settings(OWNERS_FOR_USER=orgs_of):
        response = client.get(f"{ONBOARDING}?domain=datadoghq.com&site=app.datadoghq.com")
    assert response.status_code == 403
    assert "Your account cannot connect Datadog" in response.content.decode()


# --- Identity: reconnecting updates in place ------------------------------------------


def connect_once(client: Client, rsps: responses.RequestsMock, **callback_extra: str) -> Connection:
    started = start(client)
    response = callback(client, started.state, **callback_extra)
    assert response["Location"] == CONNECTED, response["Location"]
    return Connection.objects.order_by("-updated_at").first()  # type: ignore[return-value]


def test_connecting_again_updates_the_connection_and_keeps_a_valid_key(
    alice: Any, mocked_http: responses.RequestsMock, established: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    client = signed_in(alice)
    fake_datadog(mocked_http)
    first = connect_once(client, mocked_http)
    created_at = first.created_at

    mocked_http.replace(
        responses.POST,
        api("datadoghq.com", "/oauth2/v1/token"),
        json=token_json("access-2", "refresh-2"),
    )
    # 409: the token's organisation holds its key; the owner's only live key is kept.
    mocked_http.replace(responses.POST, MARKETPLACE, status=409, json={"errors": ["exists"]})
    mocked_http.get(api("datadoghq.com", "/api/v1/validate"), json={"valid": True})
    mocked_http.calls.reset()
    with django_capture_on_commit_callbacks(execute=True):
        second = connect_once(client, mocked_http)
    assert second.pk == first.pk
    assert second.created_at == created_at
    assert second.access_token is not None and second.access_token.reveal() == "access-2"
    assert second.api_key is not None and second.api_key.reveal() == API_KEY
    assert requests_made(mocked_http) == [
        ("POST", "api.datadoghq.com", "/oauth2/v1/token"),
        ("POST", "api.datadoghq.com", "/api/v2/api_keys/marketplace"),
        ("GET", "api.datadoghq.com", "/api/v1/validate"),
    ]
    assert mocked_http.calls[2].request.headers["DD-API-KEY"] == API_KEY
    assert established[-1]["created"] is False
    page = client.get(CONNECTED).content.decode()
    assert "alice is reconnected to Datadog" in page
    assert "still works and was kept" in page


def test_org_params_of_the_callback_are_neither_stored_nor_used_to_choose(
    alice: Any, mocked_http: responses.RequestsMock
) -> None:
    client = signed_in(alice)
    fake_datadog(mocked_http)
    mocked_http.get(api("datadoghq.com", "/api/v1/validate"), json={"valid": True})
    first = connect_once(client, mocked_http, dd_oid="org-a", dd_org_name="Alpha Inc")
    assert (first.dd_org_id, first.dd_org_name) == ("", "")  # Datadog named no org
    mocked_http.replace(responses.POST, MARKETPLACE, status=409, json={"errors": ["exists"]})
    other = connect_once(client, mocked_http, dd_oid="org-b", dd_org_name="Beta Inc")
    assert other.pk == first.pk  # Datadog's 409, not the browser, decided
    assert (other.dd_org_id, other.dd_org_name) == ("", "")
    assert Connection.objects.count() == 1


def test_reconnect_starts_a_fresh_flow_with_the_stored_site(
    alice: Any, mocked_http: responses.RequestsMock
) -> None:
    client = signed_in(alice)
    fake_datadog(mocked_http, "datadoghq.eu")
    started = start(client, "datadoghq.eu", "acme.datadoghq.eu")
    callback(client, started.state, domain="datadoghq.eu")
    connection = Connection.objects.get()

    response = client.post(f"/datadog/connections/{connection.pk}/reconnect/")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert (location.netloc, location.path) == ("acme.datadoghq.eu", "/oauth2/v1/authorize")
    state = dict(parse_qsl(location.query))["state"]
    pending = AuthorizationRequest.objects.get(state=state)
    assert pending.reconnect_of == connection
    assert (pending.domain, pending.site) == ("datadoghq.eu", "https://acme.datadoghq.eu")

    mocked_http.replace(
        responses.POST,
        api("datadoghq.eu", "/api/v2/api_keys/marketplace"),
        status=409,
        json={"errors": ["exists"]},
    )
    mocked_http.get(api("datadoghq.eu", "/api/v1/validate"), json={"valid": True})
    assert callback(client, state, domain="datadoghq.eu")["Location"] == CONNECTED
    assert Connection.objects.get().pk == connection.pk


def test_reconnect_answered_for_another_org_makes_a_new_connection(
    alice: Any, mocked_http: responses.RequestsMock
) -> None:
    """201 while the reconnected connection's key still works: the token's organisation
    had no key, so it is not that connection's organisation."""
    client = signed_in(alice)
    fake_datadog(mocked_http)
    first = connect_once(client, mocked_http)
    response = client.post(f"/datadog/connections/{first.pk}/reconnect/")
    state = dict(parse_qsl(urlsplit(response["Location"]).query))["state"]
    mocked_http.replace(
        responses.POST, MARKETPLACE, json=key_json("fedcba9876543210fedcba9876543210", "key-2")
    )
    mocked_http.replace(
        responses.POST, api("datadoghq.com", "/oauth2/v1/token"), json=token_json("access-2")
    )
    mocked_http.get(api("datadoghq.com", "/api/v1/validate"), json={"valid": True})
    assert callback(client, state)["Location"] == CONNECTED
    assert Connection.objects.count() == 2
    page = client.get(CONNECTED).content.decode()
    assert "alice is connected to a different Datadog organisation" in page
    first.refresh_from_db()
    assert first.access_token is not None and first.access_token.reveal() == "access-1"
    assert first.api_key is not None and first.api_key.reveal() == API_KEY


# --- Pages and permissions ------------------------------------------------------------


@pytest.fixture
def connection(alice: Any, mocked_http: responses.RequestsMock) -> Connection:
    client = signed_in(alice)
    fake_datadog(mocked_http)
    return connect_once(client, mocked_http)


def test_connection_pages_for_the_owner(alice: Any, connection: Connection) -> None:
    client = signed_in(alice)
    listing = client.get("/datadog/connections/")
    assert listing.status_code == 200
    assert_flow_headers(listing, "same-origin")
    assert f"/datadog/connections/{connection.pk}/" in listing.content.decode()
    detail = client.get(f"/datadog/connections/{connection.pk}/")
    assert detail.status_code == 200
    assert_flow_headers(detail, "same-origin")
    text = detail.content.decode()
    assert f"…{API_KEY[-4:]}" in text
    assert API_KEY not in text
    badge = '<span class="ddp-badge ddp-badge--ok" data-status="active">Active</span>'
    assert badge in text and badge in listing.content.decode()
    assert connection.label in listing.content.decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/datadog/connections/{pk}/"),
        ("get", "/datadog/connections/{pk}/disconnect/"),
        ("post", "/datadog/connections/{pk}/disconnect/"),
        ("post", "/datadog/connections/{pk}/reconnect/"),
        ("post", "/datadog/connections/{pk}/api-key/"),
    ],
)
def test_another_users_connection_answers_404(
    django_user_model: Any, connection: Connection, method: str, path: str
) -> None:
    mallory = signed_in(make_user(django_user_model, "mallory"))
    response = getattr(mallory, method)(path.format(pk=connection.pk))
    missing = getattr(mallory, method)(path.format(pk=connection.pk + 1000))
    assert (response.status_code, missing.status_code) == (404, 404)
    # The package's page in the package's layout and headers, the same for both (no oracle).
    assert response.content == missing.content
    page = response.content.decode()
    assert '<body class="datadog-partner">' in page and "<h1>Not found</h1>" in page
    assert 'href="/datadog/connections/"' in page
    assert response["X-Frame-Options"] == "DENY"
    assert "no-store" in response["Cache-Control"]
    assert response["Referrer-Policy"] == "same-origin"
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ACTIVE
    assert AuthorizationRequest.objects.filter(reconnect_of=connection).count() == 0


def test_members_of_the_owner_may_manage_its_connections(
    django_user_model: Any,
    alice: Any,
    two_orgs: list[Organization],
    mocked_http: responses.RequestsMock,
    partner_settings: Any,
) -> None:
    bob = make_user(django_user_model, "bob")
    two_orgs[0].members.add(bob)
    with partner_settings(OWNERS_FOR_USER=orgs_of):
        client = signed_in(alice)
        fake_datadog(mocked_http)
        connection = connect_once(client, mocked_http)
        assert connection.owner == two_orgs[0]
        assert signed_in(bob).get(f"/datadog/connections/{connection.pk}/").status_code == 200
        carol = make_user(django_user_model, "carol")
        assert signed_in(carol).get(f"/datadog/connections/{connection.pk}/").status_code == 404
        listing = signed_in(bob).get("/datadog/connections/").content.decode()
        assert f"/datadog/connections/{connection.pk}/" in listing


def test_state_changing_routes_refuse_get_and_missing_csrf(
    alice: Any, connection: Connection
) -> None:
    client = signed_in(alice)
    for action in ("reconnect", "api-key"):
        assert client.get(f"/datadog/connections/{connection.pk}/{action}/").status_code == 405
    # GET on disconnect is its confirmation page: it only asks.
    asked = client.get(f"/datadog/connections/{connection.pk}/disconnect/")
    assert asked.status_code == 200 and "Yes, disconnect" in asked.content.decode()
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(alice)
    for action in ("disconnect", "reconnect", "api-key"):
        assert (
            csrf_client.post(f"/datadog/connections/{connection.pk}/{action}/").status_code == 403
        )
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ACTIVE


@pytest.mark.parametrize("action", ["disconnect", "reconnect", "api-key"])
def test_state_changing_routes_check_csrf_without_the_middleware_too(
    alice: Any, connection: Connection, settings: Any, action: str
) -> None:
    """Like the onboarding POST and the admin, the pages protect themselves: a host that
    left ``CsrfViewMiddleware`` out must not expose a customer's connection to any site."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("CsrfViewMiddleware")]
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(alice)
    flows = AuthorizationRequest.objects.count()
    assert csrf_client.post(f"/datadog/connections/{connection.pk}/{action}/").status_code == 403
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ACTIVE
    assert AuthorizationRequest.objects.count() == flows


def test_anonymous_users_are_sent_to_login_from_connection_pages(connection: Connection) -> None:
    response = Client().get(f"/datadog/connections/{connection.pk}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_disconnect_revokes_through_the_lifecycle_operation(
    alice: Any, connection: Connection, mocked_http: responses.RequestsMock
) -> None:
    mocked_http.post(api("datadoghq.com", "/oauth2/v1/revoke"), status=200)
    client = signed_in(alice)
    response = client.post(f"/datadog/connections/{connection.pk}/disconnect/")
    assert response.status_code == 302
    assert response["Location"] == f"/datadog/connections/{connection.pk}/"
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.REVOKED
    page = client.get(response["Location"]).content.decode()
    assert "Connect again" in page
    # What is left to do in Datadog, said once (not in the notice and the page both).
    assert page.count("OAuth Client API Key") == 1 and "ends in" in page
    assert "Disconnected: Datadog revoked this integration&#x27;s access." in page
    # Read later by the customer and by the vendor's staff: where, not "on this page".
    assert connection.status_reason == "Disconnected from the connection page."


def test_disconnect_first_asks_on_a_page_that_says_what_happens(
    alice: Any, connection: Connection, mocked_http: responses.RequestsMock
) -> None:
    client = signed_in(alice)
    detail = client.get(f"/datadog/connections/{connection.pk}/").content.decode()
    url = f"/datadog/connections/{connection.pk}/disconnect/"
    assert f'<a class="button danger" href="{url}">Disconnect…</a>' in detail
    mocked_http.calls.reset()

    page = client.get(url).content.decode()

    assert "Disconnect alice from Datadog?" in page
    for consequence in ("revoke this integration's access", "deletes the credentials",
                        "stops all data", "Datadog's API Keys page",
                        f"ends in {API_KEY[-4:]}"):  # fmt: skip
        assert consequence in page
    assert '<button type="submit" class="danger">Yes, disconnect</button>' in page
    assert len(mocked_http.calls) == 0  # asking changes nothing
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ACTIVE


def test_after_an_admin_revoke_the_customer_is_told_to_remove_the_api_key(
    alice: Any, connection: Connection, mocked_http: responses.RequestsMock, django_user_model: Any
) -> None:
    from django_datadog_partner.admin.lifecycle_actions import ADMIN_REVOKE_REASON
    from django_datadog_partner.connections import revoke

    mocked_http.post(api("datadoghq.com", "/oauth2/v1/revoke"), status=200)
    revoke(connection, reason=ADMIN_REVOKE_REASON, actor=make_user(django_user_model, "staff-vic"))

    page = signed_in(alice).get(f"/datadog/connections/{connection.pk}/").content.decode()
    assert "Disconnected by our support team." in page
    assert "remove the API key in Datadog" in page and "OAuth Client API Key" in page
    assert "staff-vic" not in page  # no staff user names on the customer's pages


def test_flow_pages_load_nothing_from_third_parties(
    alice: Any, mocked_http: responses.RequestsMock
) -> None:
    """AT-41: no scripts, styles, images or frames from anywhere on the flow pages."""
    client = signed_in(alice)
    mocked_http.post(api("datadoghq.com", "/oauth2/v1/token"), json=token_json())
    mocked_http.post(api("datadoghq.com", "/api/v2/api_keys/marketplace"), status=409)
    pages = [
        client.get(ONBOARDING),
        client.get(f"{ONBOARDING}?domain=datadoghq.com&site=app.datadoghq.com"),
    ]
    started = start(client)
    callback(client, started.state)
    pages += [client.get(CONNECTED), client.get("/datadog/error/?reason=access_denied")]
    pk = Connection.objects.get().pk
    pages += [client.get("/datadog/connections/"), client.get(f"/datadog/connections/{pk}/")]
    pages.append(client.get(f"/datadog/connections/{pk}/disconnect/"))
    for page in pages:
        assert "no-store" in page["Cache-Control"]
        assert page["Referrer-Policy"] in ("no-referrer", "same-origin")
        html = page.content.decode().lower()
        for tag in ("<script", "<img", "<iframe", "@import", "url("):
            assert tag not in html, (page.request["PATH_INFO"], tag)
        # One stylesheet, the app's own, from this site's STATIC_URL.
        links = re.findall(r"<link[^>]*>", html)
        assert links == ['<link rel="stylesheet" href="/static/datadog_partner/partner.css">']
    # The stylesheet imports only its sibling (badges.css), which imports nothing.
    static = Path(django_datadog_partner.__file__).parent / "static" / "datadog_partner"
    imports = re.findall(r"url\([^)]*\)", (static / "partner.css").read_text())
    assert imports == ['url("badges.css")']
    assert "url(" not in (static / "badges.css").read_text()


def test_connecting_a_revoked_connection_again_restores_it_in_place(
    alice: Any,
    connection: Connection,
    mocked_http: responses.RequestsMock,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django_datadog_partner.signals import connection_status_changed

    mocked_http.post(api("datadoghq.com", "/oauth2/v1/revoke"), status=200)
    client = signed_in(alice)
    client.post(f"/datadog/connections/{connection.pk}/disconnect/")
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.REVOKED
    changes: list[tuple[str, str]] = []

    def receiver(sender: Any, old: str, new: str, **kwargs: Any) -> None:
        changes.append((old, new))

    connection_status_changed.connect(receiver)
    try:
        response = client.post(f"/datadog/connections/{connection.pk}/reconnect/")
        state = dict(parse_qsl(urlsplit(response["Location"]).query))["state"]
        mocked_http.replace(
            responses.POST,
            api("datadoghq.com", "/oauth2/v1/token"),
            json=token_json("access-new", "refresh-new"),
        )
        with django_capture_on_commit_callbacks(execute=True):
            assert callback(client, state)["Location"] == CONNECTED
    finally:
        connection_status_changed.disconnect(receiver)
    restored = Connection.objects.get()
    assert restored.pk == connection.pk
    assert restored.status == ConnectionStatus.ACTIVE
    assert restored.access_token is not None and restored.access_token.reveal() == "access-new"
    assert restored.api_key is not None and restored.api_key.reveal() == API_KEY
    assert changes == [("revoked", "key_missing"), ("key_missing", "active")]
