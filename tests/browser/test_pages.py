"""The admin and customer pages in Chromium at 1280 px: the status dashboard, status
badges, object tools, the copy button, the disconnect confirmation and the flow pages.

Each page is checked for what a person would see as broken (``layout_problems``) and
saved for the docs under a stable name (``docs_shot``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from django_datadog_partner.alarms import raise_alarm
from django_datadog_partner.models import (
    AuthorizationRequest,
    Connection,
    ConnectionStatus,
    OutboxEvent,
    OutboxKind,
    OutboxStatus,
    SiteBreaker,
)
from django_datadog_partner.schedules import ensure_schedules
from django_datadog_partner.testing import make_connection
from tests.testapp.models import Organization

from .support import PASSWORD, VIEWPORT, Journey, Shot, docs_shot, eventually, layout_problems

DANGER_RED = "rgb(186, 33, 33)"  # the admin's delete-button red


@pytest.fixture
def admin_page(page: Any, dd_live: str, shot: Shot) -> Any:
    """A signed-in superuser's browser at 1280 by 800 px."""
    get_user_model().objects.create_superuser("root", password=PASSWORD)
    page.set_viewport_size(VIEWPORT)
    page.goto(f"{dd_live}/accounts/login/?next=/admin/")
    Journey(page, dd_live, shot).host_login("root")
    page.wait_for_selector("#site-name")
    page.base = dd_live
    return page


def some_connections() -> list[Connection]:
    """A vendor's morning: most connections fine, a few waiting for their customers."""
    shops = ["Acme Shop", "Globex Corporation", "Initech", "Umbrella Retail", "Hooli Store"]
    owners = [Organization.objects.create(name=name) for name in shops]
    now = timezone.now()
    return [
        make_connection(owners[0], dd_org_name="Acme", last_success_at=now,
                        health_checked_at=now - timedelta(hours=2)),
        make_connection(owners[1], dd_org_name="Globex (EU)", domain="datadoghq.eu",
                        site="https://app.datadoghq.eu", last_success_at=now),
        make_connection(owners[2], status=ConnectionStatus.KEY_MISSING, dd_org_name="",
                        dd_org_id="", last_error_code="http_409", last_error_at=now,
                        status_reason="Datadog already holds this integration's API key."),
        make_connection(owners[3], status=ConnectionStatus.NEEDS_RECONNECT,
                        dd_org_name="Umbrella Corporation", last_error_code="invalid_grant",
                        last_error_at=now - timedelta(hours=5)),
        make_connection(owners[4], status=ConnectionStatus.REVOKED, dd_org_name="Hooli",
                        access_token=None, refresh_token=None, api_key=None),
    ]  # fmt: skip


def some_telemetry() -> None:
    """Two days of outcomes, with a bad evening, and a little backlog."""
    now = timezone.now()
    rows = []
    for hour in range(48):
        at = now - timedelta(hours=hour, minutes=5)
        busy = 3 + (hour * 7) % 11
        for kind, count in ((OutboxKind.EVENT, busy), (OutboxKind.METRIC, busy * 2),
                            (OutboxKind.LOG, busy // 2)):  # fmt: skip
            rows += [OutboxEvent(kind=kind, payload={}, status=OutboxStatus.DELIVERED,
                                 created_at=at, finished_at=at) for _ in range(count)]  # fmt: skip
        if 20 <= hour <= 23:
            rows += [OutboxEvent(kind=OutboxKind.METRIC, payload={}, status=OutboxStatus.DEAD,
                                 created_at=at, finished_at=at) for _ in range(4)]  # fmt: skip
    rows += [OutboxEvent(kind=OutboxKind.EVENT, payload={}, next_attempt_at=now)
             for _ in range(3)]  # fmt: skip
    OutboxEvent.objects.bulk_create(rows)


# --- the vendor's side -------------------------------------------------------------------


def test_the_status_dashboard(admin_page: Any) -> None:
    some_connections()
    some_telemetry()
    raise_alarm("api_keys_write_missing", "The OAuth client lacks the api_keys_write scope.")
    SiteBreaker.objects.create(domain="datadoghq.eu", failures=5, last_error="HTTP 503",
                               open_until=timezone.now() + timedelta(minutes=2))  # fmt: skip
    ensure_schedules()
    page = admin_page

    page.goto(f"{page.base}/admin/")
    page.click("text=Status dashboard")
    page.wait_for_selector(".ddp-dashboard")

    assert page.locator("svg[role=img]").count() == 4
    assert page.locator("rect.delivered").count() > 100
    hatched = page.eval_on_selector("rect.failed", "r => getComputedStyle(r).fill")
    assert "ddp-hatch" in hatched  # failed bars read without colour: a pattern
    assert page.locator("figcaption", has_text="Metric points per hour").count() == 1
    page.click("text=The same figures as a table")
    assert page.locator(".ddp-outcome-table tbody tr").count() == 48
    page.click("text=The same figures as a table")
    page.click(".ddp-counts a:has-text('Needs reconnect')")
    page.wait_for_url("**status__exact=needs_reconnect")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 1
    page.go_back()
    page.wait_for_selector(".ddp-dashboard")
    assert layout_problems(page) == []
    # "in 57 min", "Up to date": each schedule's next run and state on one line.
    lines = page.eval_on_selector_all(
        "section[aria-labelledby=ddp-schedules] td.ddp-nowrap",
        "cells => cells.map(c => { const r = document.createRange(); r.selectNodeContents(c);"
        " return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; })",
    )
    assert lines and set(lines) == {1}, lines
    docs_shot(page, "admin-dashboard")


def test_the_connection_list_fits_1280_px_and_shows_badges(admin_page: Any) -> None:
    some_connections()
    page = admin_page
    page.goto(f"{page.base}/admin/datadog_partner/connection/")
    assert page.locator("#nav-sidebar").is_visible()  # both sidebars open, the worst case
    assert page.locator("#changelist-filter").is_visible()
    assert layout_problems(page) == []
    badge = page.locator(".ddp-badge", has_text="Needs reconnect")
    assert badge.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(254, 243, 199)"
    assert page.locator("text=Acme Shop → Datadog org ‘Acme’ (US1)").count() == 1
    assert page.locator("td.field-activity", has_text="http_409").count() == 1
    docs_shot(page, "admin-connections")


def test_the_connection_page_keeps_its_tools_clear_and_copies_the_link(admin_page: Any) -> None:
    connection = some_connections()[0]
    page = admin_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=page.base)
    url = f"{page.base}/admin/datadog_partner/connection/{connection.pk}/change/"
    page.goto(url)

    assert layout_problems(page) == []
    revoke = page.locator(".object-tools a:has-text('Revoke')")
    assert revoke.evaluate("a => getComputedStyle(a).backgroundColor") == DANGER_RED
    docs_shot(page, "admin-connection", full_page=False)  # the title and its tools

    page.click("text=Copy reconnect link")
    status = page.locator("#ddp-copy-status")
    link = f"{page.base}/datadog/connections/{connection.pk}/"
    eventually(lambda: status.inner_text() == f"Copied to the clipboard: {link}", "the copy")
    assert page.evaluate("navigator.clipboard.readText()") == link
    assert page.url == url  # copied in place: no page to copy it from

    revoke.click()
    page.wait_for_selector("text=Revoke: are you sure?")
    confirm = page.locator("input[type=submit][value='Yes, revoke']")
    assert confirm.evaluate("i => getComputedStyle(i).backgroundColor") == DANGER_RED
    docs_shot(page, "admin-revoke-confirm")


def test_copy_reconnect_link_from_the_list_copies_each_connections_link(admin_page: Any) -> None:
    first, second = some_connections()[:2]
    page = admin_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=page.base)
    page.goto(f"{page.base}/admin/datadog_partner/connection/")
    for connection in (first, second):
        page.check(f"input.action-select[value='{connection.pk}']")
    page.select_option("select[name=action]", "reconnect_link_action")
    page.click("button[name=index]")
    page.wait_for_selector("text=Reconnect link for")
    assert layout_problems(page) == []
    status = page.locator("#ddp-copy-status")
    for connection in (second, first):
        link = f"{page.base}/datadog/connections/{connection.pk}/"
        page.click(f"button[data-ddp-copy='{link}']")
        eventually(lambda: status.inner_text() == f"Copied to the clipboard: {link}", "the copy")
        assert page.evaluate("navigator.clipboard.readText()") == link
    docs_shot(page, "admin-reconnect-links", full_page=False)


def test_every_list_and_record_page_of_the_package_fits_1280_px(admin_page: Any) -> None:
    """The outbox, authorization requests, alarms and breakers, filled, beside both
    sidebars: no list scrolls, no cell is clipped, no tool covers a title."""
    connections = some_connections()
    some_telemetry()
    now = timezone.now()
    OutboxEvent.objects.bulk_create(
        OutboxEvent(kind=kind, payload={}, source="testapp.order", action="updated",
                    status=status, connection=connection, last_error_code=code,
                    owner_content_type_id=connection.owner_content_type_id,
                    owner_object_id=connection.owner_object_id,
                    attempts=3, finished_at=None if status == "pending" else now)
        for connection in connections
        for kind, status, code in ((OutboxKind.EVENT, OutboxStatus.DEAD, "http_400"),
                                   (OutboxKind.METRIC, OutboxStatus.PENDING, "http_503"),
                                   (OutboxKind.LOG, OutboxStatus.PARKED, "needs_reconnect"))
    )  # fmt: skip
    root = get_user_model().objects.get(username="root")
    for number, connection in enumerate(connections):
        request = AuthorizationRequest(
            state=f"state-{number}", user=root, binding_hash=f"b{number}",
            domain=connection.domain, site=connection.site, reconnect_of=connection,
            used_at=now if number % 2 else None,
        )  # fmt: skip
        request.set_owner(connection.owner or root)
        request.code_verifier = "verifier"
        request.save()
    raise_alarm("api_keys_write_missing", "The OAuth client lacks the api_keys_write scope.")
    SiteBreaker.objects.create(domain="datadoghq.eu", failures=5, last_error="HTTP 503 " * 8,
                               opened_at=now, open_until=now + timedelta(minutes=2))  # fmt: skip
    page = admin_page
    for model in ("outboxevent", "authorizationrequest", "alarm", "sitebreaker"):
        page.goto(f"{page.base}/admin/datadog_partner/{model}/")
        assert page.locator("#result_list tbody tr").count() >= 1, model
        assert layout_problems(page) == [], model
        page.locator("#result_list tbody tr a").first.click()
        page.wait_for_selector("#content h1")
        assert layout_problems(page) == [], f"{model}: {page.url}"
    page.goto(f"{page.base}/admin/datadog_partner/outboxevent/")
    docs_shot(page, "admin-outbox", full_page=False)


def test_the_layout_check_catches_tools_over_the_title_and_a_list_that_scrolls(
    admin_page: Any,
) -> None:
    """The check above can fail: Django's own floated tools and a too-wide list trip it."""
    connection = some_connections()[0]
    page = admin_page
    page.goto(f"{page.base}/admin/datadog_partner/connection/{connection.pk}/change/")
    page.evaluate("document.querySelector('.object-tools').classList.remove('ddp-tools')")
    assert any("covers the H2" in problem for problem in layout_problems(page))

    page.goto(f"{page.base}/admin/datadog_partner/connection/")
    page.evaluate(
        "document.querySelector('#result_list td.field-activity').style.whiteSpace = 'pre';"
        "document.querySelector('#result_list td.field-activity').textContent = 'x'.repeat(300)"
    )
    assert any("it scrolls" in problem for problem in layout_problems(page))


# --- the customer's side -----------------------------------------------------------------


def test_connect_names_the_owner_and_the_site_then_the_org(journey: Journey) -> None:
    page = journey.page
    journey.open_tile()
    journey.click_connect_accounts()
    journey.host_login("ada")
    page.wait_for_selector("text=Continue to Datadog")
    assert page.inner_text("h1") == "Connect Acme to Datadog Sandbox?"
    docs_shot(page, "connect-confirm")
    page.click("text=Continue to Datadog")
    journey.sandbox_login()
    journey.consent()
    page.wait_for_selector("text=You may now close this tab.")
    assert page.inner_text("h1") == "Acme is connected to Datadog"
    connection = eventually(Connection.objects.first, "the connection")
    org = connection.dd_org_name or connection.dd_org_id
    assert f"Datadog organisation: ‘{org}’ (Sandbox)" in page.inner_text("main")
    assert page.locator(".ddp-badge", has_text="Active").count() == 1
    docs_shot(page, "connected")


def test_disconnect_asks_first_then_says_what_is_left_to_do_once(journey: Journey) -> None:
    journey.connect("ada")
    connection = eventually(Connection.objects.first, "the connection")
    page = journey.page
    page.goto(f"{journey.base}/datadog/connections/{connection.pk}/")
    docs_shot(page, "connection")
    disconnect = page.locator("a:has-text('Disconnect…')")
    assert disconnect.evaluate("a => getComputedStyle(a).backgroundColor") == "rgb(179, 38, 30)"
    disconnect.click()

    page.wait_for_selector("text=Yes, disconnect")
    assert page.inner_text("h1") == "Disconnect Acme from Datadog?"
    text = page.inner_text("main")
    for consequence in ("revoke this integration's access", "stops all data",
                        f"ends in {connection.api_key_last4}"):  # fmt: skip
        assert consequence in text
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ACTIVE  # the page only asks
    docs_shot(page, "disconnect-confirm")

    page.click("text=Yes, disconnect")
    page.wait_for_selector(".notice")
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.REVOKED
    assert page.inner_text("main").count("OAuth Client API Key") == 1
    assert page.locator(".ddp-badge", has_text="Revoked").count() == 1
    docs_shot(page, "disconnected")


def test_a_page_that_needs_the_user_never_says_close_this_tab(journey: Journey) -> None:
    """Reconnecting after a revoke: Datadog still holds the org's key (shown once)."""
    journey.connect("ada")
    connection = eventually(Connection.objects.first, "the connection")
    from django_datadog_partner.connections import revoke

    revoke(connection)
    page = journey.page
    page.goto(f"{journey.base}/datadog/connections/{connection.pk}/")
    page.click("button:has-text('Connect again')")
    if page.locator("text=Continue to Datadog").count():
        journey.confirm()
    journey.consent()
    page.wait_for_selector("text=Datadog has not given us an API key yet")
    text = page.inner_text("main")
    assert "close this tab" not in text
    assert text.count("OAuth Client API Key") == 1
    docs_shot(page, "key-missing")


def test_a_connection_that_is_not_yours_gets_the_pages_layout(journey: Journey, ada: Any) -> None:
    """The 404 of the package's pages: their layout and stylesheet, a way back, no oracle."""
    theirs = make_connection(Organization.objects.create(name="Globex"))
    page = journey.page
    page.goto(f"{journey.base}/datadog/connections/{theirs.pk}/")
    journey.host_login("ada")
    page.wait_for_selector("h1:has-text('Not found')")
    page.wait_for_load_state("load")
    assert page.eval_on_selector("body", "b => b.className") == "datadog-partner"
    width = page.eval_on_selector("body", "b => getComputedStyle(b).maxWidth")
    assert width != "none"  # partner.css applies: the page is not a bare default 404
    mine = page.inner_text("main")
    page.goto(f"{journey.base}/datadog/connections/{theirs.pk + 1000}/")
    assert page.inner_text("main") == mine  # a missing connection reads the same
    assert layout_problems(page) == []
    docs_shot(page, "not-found")
    page.click("text=All connections")
    page.wait_for_selector("h1:has-text('Datadog connections')")
