"""``views``: the pages' own rules, through the test client and the fake Datadog.

Each view answers only its methods (405 otherwise); every page, failures and refusals
included, is sent with ``Cache-Control: no-store``, its ``Referrer-Policy`` and
``X-Frame-Options: DENY``; query parameters are bounded (``single``/``query``); the
callback redirects (PRG) so ``code`` and ``state`` leave the address bar; the success page
shows only a result of this session that the user may manage; the error page shows
Datadog's words only for the failure they belong to.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.http import QueryDict
from django.test import Client, RequestFactory
from django.urls import reverse

from django_datadog_partner import failures, urls, views
from django_datadog_partner.models import AuthorizationRequest, Connection
from django_datadog_partner.regions import all_sites
from django_datadog_partner.testing import FakeDatadog
from tests.connect_support import (
    CALLBACK,
    CONNECTED,
    ONBOARDING,
    connect_through,
    make_user,
    signed_in,
)

pytestmark = pytest.mark.django_db

ERROR = "/datadog/error/"
LISTING = "/datadog/connections/"
CONFIRM = f"{ONBOARDING}?domain=datadoghq.com&site=app.datadoghq.com"

#: Each route's view and the only methods it answers.
ROUTES: dict[str, tuple[str, set[str]]] = {
    "onboarding": (ONBOARDING, {"GET", "POST"}),
    "callback": (CALLBACK, {"GET"}),
    "connected": (CONNECTED, {"GET"}),
    "error": (ERROR, {"GET"}),
    "connections": (LISTING, {"GET"}),
    "connection": (LISTING + "{pk}/", {"GET"}),
    "disconnect": (LISTING + "{pk}/disconnect/", {"GET", "POST"}),  # GET: the confirmation
    "reconnect": (LISTING + "{pk}/reconnect/", {"POST"}),
    "api_key": (LISTING + "{pk}/api-key/", {"POST"}),
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@pytest.fixture
def browser(alice: Any) -> Client:
    return signed_in(alice)


@pytest.fixture
def connection(fake: FakeDatadog, alice: Any) -> Connection:
    """Alice's connection, which the fake Datadog accepts."""
    return fake.connection(owner=alice)


def put_in_session(client: Client, key: str, value: object) -> None:
    session = client.session
    session[key] = value
    session.save()


def result_of(connection: Connection) -> dict[str, object]:
    """What a successful callback leaves in the session (``views.RESULT_KEY``)."""
    return {"connection": connection.pk, "code": "connected", "created": True,
            "key": "created", "key_reason": "", "key_detail": ""}  # fmt: skip


def assert_page_headers(response: Any, referrer: str) -> None:
    assert "no-store" in response["Cache-Control"], response["Cache-Control"]
    assert response["Referrer-Policy"] == referrer
    assert response["X-Frame-Options"] == "DENY"


def location(response: Any) -> tuple[str, dict[str, str]]:
    assert response.status_code == 302, response.content[:300]
    parts = urlsplit(response["Location"])
    return parts.path, dict(parse_qsl(parts.query))


# --- Methods ---------------------------------------------------------------------------------


def test_every_route_is_listed_here() -> None:
    assert {pattern.name for pattern in urls.urlpatterns} == set(ROUTES)


@pytest.mark.parametrize(
    ("name", "method"),
    [(name, m) for name, (_, allowed) in ROUTES.items() for m in METHODS if m not in allowed],
)
def test_each_view_refuses_the_methods_it_does_not_answer(
    browser: Client, connection: Connection, fake: FakeDatadog, name: str, method: str
) -> None:
    path, allowed = ROUTES[name]
    before = len(fake.calls)
    response = browser.generic(method, path.format(pk=connection.pk))
    assert response.status_code == 405
    assert set(response["Allow"].split(", ")) == allowed
    referrer = "no-referrer" if name in ("callback", "connected", "error") else "same-origin"
    assert_page_headers(response, referrer)
    assert len(fake.calls) == before  # nothing reached Datadog
    connection.refresh_from_db()
    assert connection.status == "active"


# --- Page headers ----------------------------------------------------------------------------


def connected_page(client: Client, connection: Connection) -> Any:
    put_in_session(client, views.RESULT_KEY, result_of(connection))
    return client.get(CONNECTED)


Page = Callable[[Client, Connection], Any]
PAGES: dict[str, tuple[Page, int, str]] = {
    "site picker": (lambda c, conn: c.get(ONBOARDING), 200, "same-origin"),
    "confirmation": (lambda c, conn: c.get(CONFIRM), 200, "same-origin"),
    "onboarding refusal": (
        lambda c, conn: c.get(f"{ONBOARDING}?domain=evil.example&site=app.datadoghq.com"),
        400,
        "same-origin",
    ),
    "callback": (lambda c, conn: c.get(f"{CALLBACK}?error=access_denied"), 302, "no-referrer"),
    "connected": (connected_page, 200, "no-referrer"),
    "connected without a result": (lambda c, conn: c.get(CONNECTED), 302, "no-referrer"),
    "error": (
        lambda c, conn: c.get(f"{ERROR}?reason=access_denied"),
        failures.PAGES[failures.ACCESS_DENIED].status,
        "no-referrer",
    ),
    "connection list": (lambda c, conn: c.get(LISTING), 200, "same-origin"),
    "connection detail": (lambda c, conn: c.get(f"{LISTING}{conn.pk}/"), 200, "same-origin"),
    "disconnect": (
        lambda c, conn: c.post(f"{LISTING}{conn.pk}/disconnect/"),
        302,
        "same-origin",
    ),
    "reconnect": (lambda c, conn: c.post(f"{LISTING}{conn.pk}/reconnect/"), 302, "same-origin"),
    "api key": (lambda c, conn: c.post(f"{LISTING}{conn.pk}/api-key/"), 302, "same-origin"),
}


@pytest.mark.parametrize("page", PAGES)
def test_every_page_is_never_cached_never_framed_and_keeps_its_referrer(
    settings: Any, alice: Any, connection: Connection, page: str
) -> None:
    # The middleware's own defaults would hide a view that sets nothing itself.
    settings.X_FRAME_OPTIONS = "SAMEORIGIN"
    settings.SECURE_REFERRER_POLICY = "unsafe-url"
    get, status, referrer = PAGES[page]
    response = get(signed_in(alice), connection)
    assert response.status_code == status
    assert_page_headers(response, referrer)


# --- single() and query() --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(views.MAX_LENGTHS))
def test_single_takes_one_value_up_to_its_length(name: str) -> None:
    longest = "x" * views.MAX_LENGTHS[name]
    assert views.single(QueryDict(urlencode({name: longest})), name) == longest
    with pytest.raises(views.BadParameter):
        views.single(QueryDict(urlencode({name: longest + "x"})), name)


@pytest.mark.parametrize(
    ("query", "value"),
    [("state=abc", "abc"), ("", None), ("other=1", None), ("state=", "")],
)
def test_single_gives_the_value_or_none(query: str, value: str | None) -> None:
    assert views.single(QueryDict(query), "state") == value


@pytest.mark.parametrize("query", ["state=a&state=b", "state=a&state=a", "state=a%00b"])
def test_single_refuses_repeats_and_nul_bytes(query: str) -> None:
    with pytest.raises(views.BadParameter):
        views.single(QueryDict(query), "state")


def test_query_refuses_an_oversized_query_string_whatever_it_holds() -> None:
    factory = RequestFactory()
    padding = "&pad=" + "x" * views.MAX_QUERY_STRING
    at_limit = "state=s&" + "p" * (views.MAX_QUERY_STRING - len("state=s&"))
    assert views.query(factory.get("/", QUERY_STRING=at_limit), "state", "code") == {
        "state": "s",
        "code": None,
    }
    with pytest.raises(views.BadParameter):
        views.query(factory.get("/", QUERY_STRING="state=s" + padding), "state")


def test_a_repeated_or_malformed_parameter_gets_the_bad_request_page(browser: Client) -> None:
    onboarding = browser.get(f"{ONBOARDING}?domain=datadoghq.com&domain=datadoghq.eu")
    assert onboarding.status_code == 400
    assert "Error code: bad_request" in onboarding.content.decode()
    for query in ("state=a&state=b&code=c", "code=c%00d&state=a", "code=c&state=" + "s" * 129):
        assert location(browser.get(f"{CALLBACK}?{query}")) == (ERROR, {"reason": "bad_request"})
    repeated = browser.get(f"{ERROR}?reason=access_denied&reason=state_used")
    assert repeated.status_code == 400
    assert "Error code: bad_request" in repeated.content.decode()


# --- The callback: PRG -----------------------------------------------------------------------


def test_a_successful_callback_redirects_to_a_clean_address(
    browser: Client, fake: FakeDatadog
) -> None:
    dd_user = fake.create_user(fake.create_org("Acme Inc"), "alice")
    response = connect_through(browser, fake, dd_user)
    assert response["Location"] == CONNECTED  # no code, no state
    page = browser.get(CONNECTED)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Connected to Datadog" in text and "Acme Inc" in text


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"error": "access_denied", "state": "st-1", "code": "co-1"}, failures.ACCESS_DENIED),
        ({"error": "invalid_scope", "state": "st-1"}, failures.INVALID_SCOPE),
        ({"error": "server_error", "state": "st-1"}, failures.AUTHORIZE_ERROR),
        ({"code": "co-1", "state": "st-1"}, failures.STATE_UNKNOWN),
        ({"state": "st-1"}, failures.BAD_REQUEST),  # no code
    ],
)
def test_a_failed_callback_redirects_with_only_the_reason(
    browser: Client, query: dict[str, str], reason: str
) -> None:
    response = browser.get(f"{CALLBACK}?{urlencode(query)}")
    assert location(response) == (ERROR, {"reason": reason})
    assert "st-1" not in response["Location"] and "co-1" not in response["Location"]
    assert "Error code: " + reason in browser.get(response["Location"]).content.decode()


def test_a_signed_out_callback_redirects_to_the_signed_out_page() -> None:
    response = Client().get(f"{CALLBACK}?code=co-1&state=st-1")
    assert location(response) == (ERROR, {"reason": failures.SIGNED_OUT})


# --- The connected page ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [None, "not a dict", {"connection": "1"}, {"connection": None}, {"connection": 999999}, {}],
    ids=["none", "string", "pk-as-text", "no-pk", "gone", "empty"],
)
def test_the_connected_page_without_a_usable_result_goes_to_the_list(
    browser: Client, connection: Connection, result: object
) -> None:
    if result is not None:
        put_in_session(browser, views.RESULT_KEY, result)
    assert location(browser.get(CONNECTED)) == (LISTING, {})


def test_the_connected_page_never_shows_a_connection_the_user_may_not_manage(
    django_user_model: Any, connection: Connection
) -> None:
    mallory = signed_in(make_user(django_user_model, "mallory"))
    put_in_session(mallory, views.RESULT_KEY, result_of(connection))
    response = mallory.get(CONNECTED)
    assert location(response) == (LISTING, {})
    assert connection.dd_org_name not in response.content.decode()


def test_the_connected_page_shows_the_sessions_result(
    browser: Client, connection: Connection
) -> None:
    put_in_session(browser, views.RESULT_KEY, result_of(connection))
    page = browser.get(CONNECTED)
    assert page.status_code == 200
    text = page.content.decode()
    assert connection.dd_org_name in text
    assert "An API key was created" in text
    assert reverse("datadog_partner:connection", args=[connection.pk]) in text


# --- The error page --------------------------------------------------------------------------


def flash(client: Client, reason: str, detail: str) -> None:
    put_in_session(client, views.FAILURE_KEY, {"reason": reason, "detail": detail})


def test_the_error_page_shows_datadogs_words_for_their_own_failure_once(browser: Client) -> None:
    flash(browser, failures.ACCESS_DENIED, "You said <no> at Datadog")
    page = browser.get(f"{ERROR}?reason=access_denied")
    assert page.status_code == failures.PAGES[failures.ACCESS_DENIED].status
    text = page.content.decode()
    assert "You said &lt;no&gt; at Datadog" in text and "<no>" not in text
    assert "You said" not in browser.get(f"{ERROR}?reason=access_denied").content.decode()


def test_the_error_page_never_shows_words_flashed_for_another_failure(browser: Client) -> None:
    flash(browser, failures.ACCESS_DENIED, "Words for access_denied")
    page = browser.get(f"{ERROR}?reason=invalid_scope")
    assert "Error code: invalid_scope" in page.content.decode()
    assert "Words for access_denied" not in page.content.decode()
    later = browser.get(f"{ERROR}?reason=access_denied")  # the flash was used up
    assert "Words for access_denied" not in later.content.decode()


def test_the_error_page_ignores_a_flash_that_is_not_a_failure(browser: Client) -> None:
    put_in_session(browser, views.FAILURE_KEY, "access_denied")
    page = browser.get(f"{ERROR}?reason=access_denied")
    assert page.status_code == failures.PAGES[failures.ACCESS_DENIED].status
    assert "Datadog said" not in page.content.decode()


@pytest.mark.parametrize("query", ["", "?reason=", "?reason=no_such_reason"])
def test_an_unknown_reason_gets_the_unknown_state_page(browser: Client, query: str) -> None:
    page = browser.get(ERROR + query)
    assert page.status_code == failures.PAGES[failures.STATE_UNKNOWN].status
    assert "Error code: state_unknown" in page.content.decode()


def test_the_redirect_uri_page_names_the_uri_to_register(browser: Client) -> None:
    text = browser.get(f"{ERROR}?reason=redirect_uri_mismatch").content.decode()
    assert "https://vendor.example/datadog/callback/" in text


# --- The site picker -------------------------------------------------------------------------


def picker_links(page: Any) -> list[str]:
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page.content.decode())]
    return [href for href in hrefs if href.startswith(ONBOARDING + "?")]


def test_the_site_picker_links_each_datadog_site_to_its_confirmation(browser: Client) -> None:
    picker = browser.get(ONBOARDING)
    assert picker.status_code == 200
    links = picker_links(picker)
    sites = list(all_sites().values())
    assert [dict(parse_qsl(urlsplit(link).query)) for link in links] == [
        {"domain": site.domain, "site": site.web_url} for site in sites
    ]
    for site, link in zip(sites, links, strict=True):
        assert site.name in picker.content.decode()
        confirmation = browser.get(link)
        assert confirmation.status_code == 200, link
        assert f"Connect alice to Datadog {site.name}?" in confirmation.content.decode()


def test_the_site_picker_starts_nothing(browser: Client) -> None:
    browser.get(ONBOARDING)
    assert not AuthorizationRequest.objects.exists()
