"""Admin pages that read naturally: labels that name things, titles of read-only lists,
filters that list what exists, and badges with enough contrast to read."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone

import django_datadog_partner
from django_datadog_partner.alarms import raise_alarm
from django_datadog_partner.models import (
    Alarm,
    Connection,
    ConnectionStatus,
    OutboxEvent,
    owner_reference,
)
from django_datadog_partner.templatetags.datadog_partner import TONES
from django_datadog_partner.testing import make_connection
from tests.lifecycle_support import make_owner
from tests.testapp.models import Organization, Workspace

pytestmark = pytest.mark.django_db

CONNECTIONS = "/admin/datadog_partner/connection/"
OUTBOX = "/admin/datadog_partner/outboxevent/"
ALARMS = "/admin/datadog_partner/alarm/"
STATIC = Path(django_datadog_partner.__file__).parent / "static" / "datadog_partner"


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def test_a_connection_is_named_by_its_owner_its_verified_org_and_its_region():
    acme = Organization.objects.create(name="Acme Shop")
    connection = make_connection(acme, dd_org_name="Acme", domain="datadoghq.eu")
    assert connection.label == "Acme Shop → Datadog org ‘Acme’ (EU1)"
    assert str(connection) == connection.label
    unnamed = make_connection(acme, dd_org_id="", dd_org_name="")
    assert unnamed.label == "Acme Shop → Datadog (US1)"
    by_id = make_connection(acme, dd_org_id="abc123", dd_org_name="")
    assert by_id.label == "Acme Shop → Datadog org ‘abc123’ (US1)"
    acme.delete()
    assert Connection.objects.get(pk=connection.pk).label.startswith("deleted owner → ")


def test_the_connection_page_names_the_region_and_lists_the_scopes(admin_client):
    connection = make_connection(domain="datadoghq.eu", scopes=["api_keys_write", "events_read"])
    detail = page(admin_client, f"{CONNECTIONS}{connection.pk}/change/")
    assert '<div class="readonly">EU1 (datadoghq.eu)</div>' in detail
    assert '<div class="readonly">api_keys_write, events_read</div>' in detail


def test_an_unknown_region_is_named_by_its_domain():
    connection = make_connection(domain="old.example")
    assert connection.region_name == "old.example"


def test_lists_on_read_only_pages_are_titled_with_what_they_list(admin_client):
    make_connection()
    for _ in range(8):
        OutboxEvent.objects.create(kind="event", payload={})
    connections = page(admin_client, CONNECTIONS)
    assert "<h1>Datadog connections</h1>" in connections and "to change" not in connections
    outbox = page(admin_client, OUTBOX)
    assert "<h1>Outbox items</h1>" in outbox
    assert "8 outbox items" in outbox and "8 outbox\n" not in outbox
    assert "<h1>Configuration alarms</h1>" in page(admin_client, ALARMS)


def test_the_owner_type_filter_lists_only_types_that_have_connections(admin_client):
    alice = make_owner("alice")
    make_connection(alice)
    acme = make_connection(Organization.objects.create(name="Acme Shop"))
    listing = page(admin_client, CONNECTIONS)
    for model, listed in ((type(alice), True), (Organization, True),
                          (Workspace, False), (Alarm, False)):  # fmt: skip
        content_type = ContentType.objects.get_for_model(model)
        assert (f"owner_type={content_type.pk}" in listing) is listed, model
    # Named by the model, not the content type's "Testapp | organization".
    organization = ContentType.objects.get_for_model(Organization).pk
    assert f'<a href="?owner_type={organization}">Organization</a>' in listing
    assert "Testapp | organization" not in listing
    filtered = page(admin_client, f"{CONNECTIONS}?owner_type={organization}")
    assert "1 Datadog connection" in filtered and acme.label in filtered


def test_the_last_error_filter_lists_only_errors_that_happened(admin_client):
    make_connection()
    broken = make_connection(last_error_code="invalid_grant")
    listing = page(admin_client, CONNECTIONS)
    assert '<a href="?last_error=invalid_grant">invalid_grant</a>' in listing
    assert 'last_error="' not in listing and "?last_error_code=" not in listing  # no blank
    filtered = page(admin_client, f"{CONNECTIONS}?last_error=invalid_grant")
    assert "1 Datadog connection" in filtered and broken.label in filtered


def test_alarms_are_filtered_by_state_open_or_cleared(admin_client):
    raise_alarm("open_one", "Still a problem.")
    raise_alarm("old_one", "Fixed.")
    Alarm.objects.filter(code="old_one").update(cleared_at=timezone.now())
    listing = page(admin_client, ALARMS)
    assert "By state" in listing and "By cleared" not in listing
    opened = page(admin_client, ALARMS + "?state=open")
    assert "open_one" in opened and "old_one" not in opened
    cleared = page(admin_client, ALARMS + "?state=closed")
    assert "old_one" in cleared and "open_one" not in cleared


def test_breakers_are_filtered_by_state(admin_client):
    from django_datadog_partner.models import SiteBreaker

    SiteBreaker.objects.create(domain="datadoghq.eu", open_until=timezone.now())
    SiteBreaker.objects.create(domain="datadoghq.com")
    breakers = "/admin/datadog_partner/sitebreaker/"
    listing = page(admin_client, breakers)
    assert "By open until" not in listing
    assert "EU1 (datadoghq.eu)" in listing and "US1 (datadoghq.com)" in listing
    assert re.search(r"Open until <time [^>]+>just now</time>", listing)
    assert '<td class="field-state">Closed</td>' in listing
    opened = page(admin_client, breakers + "?state=open")
    assert "EU1 (datadoghq.eu)" in opened and "US1 (datadoghq.com)" not in opened


def test_alarms_say_when_they_were_raised_and_whether_they_are_open(admin_client):
    raise_alarm("open_one", "Still a problem.")
    listing = page(admin_client, ALARMS)
    assert re.search(r"First:</span> <time [^>]+>just now</time><br>", listing)
    assert '<td class="field-cleared">Open</td>' in listing


def test_the_outbox_names_owners_and_connections(admin_client):
    acme = Organization.objects.create(name="Acme Shop")
    connection = make_connection(acme, dd_org_name="Acme")
    content_type, object_id = owner_reference(acme)
    OutboxEvent.objects.create(
        kind="event", payload={}, connection=connection,
        owner_content_type_id=content_type, owner_object_id=object_id,
    )  # fmt: skip
    OutboxEvent.objects.create(
        kind="event", payload={}, owner_content_type_id=content_type, owner_object_id="999"
    )
    listing = page(admin_client, OUTBOX)
    assert '<td class="field-owner_display">Acme Shop</td>' in listing
    assert "organization 999 (deleted)" in listing
    assert "Acme Shop → Datadog org ‘Acme’ (US1)" in listing
    # The owner filter offers owners by name.
    assert f'<a href="?owner={content_type}%3A{object_id}">Acme Shop</a>' in listing


def test_outbox_rows_say_what_they_are_how_they_ended_and_when(admin_client):
    acme = Organization.objects.create(name="Acme Shop")
    connection = make_connection(acme, dd_org_name="Acme")
    now = timezone.now()
    OutboxEvent.objects.create(
        kind="event", payload={}, source="testapp.order", action="updated", status="dead",
        attempts=3, connection=connection, last_error_code="http_400", finished_at=now,
    )  # fmt: skip
    OutboxEvent.objects.create(
        kind="metric", payload={}, source="api", status="no_connection",
        last_error_code="no_connection", finished_at=now,
    )  # fmt: skip
    OutboxEvent.objects.create(kind="log", payload={}, next_attempt_at=now + timedelta(minutes=5))
    listing = page(admin_client, OUTBOX)
    cells = dict.fromkeys(re.findall(r'<td class="field-(\w+)"', listing))
    assert list(cells) == ["item_display", "status_display", "owner_display",
                           "connection_display", "timing"]  # fmt: skip
    assert 'Event<br><span class="ddp-muted">testapp.order updated</span>' in listing
    assert (
        'Dead (permanent error)<br><span class="ddp-muted">http_400, 3 attempts</span>' in listing
    )
    assert '<td class="field-status_display">No connection</td>' in listing  # said once
    # The owner has its column; the connection's names the Datadog side.
    assert '<td class="field-connection_display">Datadog org ‘Acme’ (US1)</td>' in listing
    assert re.search(r"Finished:</span> <time [^>]+>just now</time>", listing)
    assert re.search(r"Due:</span> <time [^>]+>in \d+ min</time>", listing)
    assert "datadog_partner/admin.css" in listing  # the compact columns' styles


def test_authorization_requests_name_the_user_the_region_and_the_outcome(admin_client):
    from django_datadog_partner.models import AuthorizationRequest

    user = make_owner("ada")
    now = timezone.now()
    for state, used_at, expires_at in (("used", now, now), ("stale", None, now),
                                       ("open", None, now + timedelta(minutes=9))):  # fmt: skip
        request = AuthorizationRequest(
            state=state, user=user, binding_hash=state, domain="datadoghq.eu",
            site="https://app.datadoghq.eu", used_at=used_at, expires_at=expires_at,
        )  # fmt: skip
        request.set_owner(user)
        request.code_verifier = "verifier"
        request.save()
    assert str(request) == "Authorization for Datadog EU1 by ada"
    listing = page(admin_client, "/admin/datadog_partner/authorizationrequest/")
    assert '<td class="field-region">EU1</td>' in listing
    assert re.search(r"Used <time [^>]+>just now</time>", listing)
    assert re.search(r"Expired unused <time [^>]+>just now</time>", listing)
    assert re.search(r"Waiting, expires <time [^>]+>in \d+ min</time>", listing)
    assert '<a href="?region=datadoghq.eu">EU1</a>' in listing  # the filter, by name


def test_a_recovered_connection_shows_no_last_error(admin_client):
    from django_datadog_partner.status import mark_broken, set_status

    connection = make_connection()
    mark_broken(connection, ConnectionStatus.KEY_MISSING, "No key.", "http_409")
    assert "http_409" in page(admin_client, CONNECTIONS)
    set_status(connection, ConnectionStatus.ACTIVE, "Datadog created the API key.")
    assert "http_409" not in page(admin_client, CONNECTIONS)


def test_the_admin_says_who_did_it_in_the_history_not_the_reason(admin_client, mocked_http):
    from tests.lifecycle_support import REVOKE_URL

    mocked_http.post(REVOKE_URL, body="")
    connection = make_connection()
    confirm = reverse("admin:datadog_partner_connection_confirm", args=["revoke"])
    admin_client.post(f"{confirm}?ids={connection.pk}", {"ids": str(connection.pk)})
    history = page(admin_client, reverse("admin:datadog_partner_connection_history",
                                         args=[connection.pk]))  # fmt: skip
    assert "admin" in history and "Revoke: Disconnected" in history
    assert "admin" not in Connection.objects.get(pk=connection.pk).status_reason


def test_admin_messages_name_the_connection(admin_client, mocked_http):
    from tests.lifecycle_support import TOKEN_URL, token_json

    mocked_http.post(TOKEN_URL, json=token_json())
    acme = Organization.objects.create(name="Acme Shop")
    connection = make_connection(acme, dd_org_name="Acme")
    confirm = reverse("admin:datadog_partner_connection_confirm", args=["refresh"])
    response = admin_client.post(
        f"{confirm}?ids={connection.pk}", {"ids": str(connection.pk)}, follow=True
    )
    assert "Acme Shop → Datadog org ‘Acme’ (US1): Refresh now: Token refreshed" in (
        response.content.decode()
    )


# --- badges --------------------------------------------------------------------------------


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_every_status_has_a_badge_whose_colours_pass_wcag_aa():
    css = (STATIC / "badges.css").read_text()
    rules = dict(
        re.findall(r"\.ddp-badge--(\w+) \{ color: (#[0-9a-f]{6}); background-color: #", css)
    )
    backgrounds = dict(
        re.findall(r"\.ddp-badge--(\w+) \{[^}]*background-color: (#[0-9a-f]{6})", css)
    )
    assert set(TONES) == set(ConnectionStatus.values)
    for tone in set(TONES.values()):
        assert contrast(rules[tone], backgrounds[tone]) >= 4.5, tone


def test_the_badge_says_the_status_in_words(admin_client):
    make_connection(status=ConnectionStatus.API_KEY_REJECTED)
    listing = page(admin_client, CONNECTIONS)
    assert (
        '<span class="ddp-badge ddp-badge--warning" data-status="api_key_rejected">'
        "API key rejected</span>" in listing
    )
    assert "datadog_partner/badges.css" in listing


def test_times_in_the_list_are_compact_with_the_full_time_as_tooltip(admin_client):
    make_connection(health_checked_at=timezone.now() - timedelta(hours=3))
    listing = page(admin_client, CONNECTIONS)
    assert re.search(
        r'Checked:</span> <time datetime="[^"]+" title="[^"]+">3 h ago</time>', listing
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "just now"), (-5, "just now"), (150, "2 min ago"), (-3000, "in 50 min"),
     (7200, "2 h ago"), (47 * 3600, "47 h ago"), (3 * 86400, "3 days ago")],
)  # fmt: skip
def test_times_are_said_in_the_largest_unit_that_fits(seconds, text):
    from django_datadog_partner.admin.display import span

    now = timezone.now()
    assert span(now - timedelta(seconds=seconds), now) == text


def test_a_malformed_connection_id_is_not_found_not_a_crash(admin_client):
    response = admin_client.get("/admin/datadog_partner/connection/not-a-number/change/")
    assert response.status_code == 302  # the admin's "doesn't exist" redirect
