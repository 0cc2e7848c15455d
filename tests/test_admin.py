"""Admin: read-only connection record, every lifecycle action's confirmation and result,
the alarm banner, permissions, and no secret anywhere in admin HTML (AT-43)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from django_datadog_partner import crypto, fields
from django_datadog_partner.admin.lifecycle_actions import ACTIONS
from django_datadog_partner.connections import raise_alarm
from django_datadog_partner.models import (
    Alarm,
    AuthorizationRequest,
    Connection,
    ConnectionStatus,
    OutboxEvent,
)
from django_datadog_partner.testing import make_connection
from tests.connect_support import signed_in_with
from tests.lifecycle_support import (
    API,
    REVOKE_URL,
    TOKEN_URL,
    VALIDATE_URL,
    all_rows,
    make_owner,
    oauth_error,
    token_json,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/datadog_partner/connection/"


def confirm_url(action: str, *connections: Connection) -> str:
    ids = ",".join(str(c.pk) for c in connections)
    return reverse("admin:datadog_partner_connection_confirm", args=[action]) + f"?ids={ids}"


def change_url(connection: Connection) -> str:
    return reverse("admin:datadog_partner_connection_change", args=[connection.pk])


def html(response) -> str:
    return response.content.decode()


@pytest.fixture
def secret_connection(canaries) -> Connection:
    return make_connection(
        make_owner("acme-owner"),
        access_token=canaries["access_token"],
        refresh_token=canaries["refresh_token"],
        api_key=canaries["api_key"],
        dd_org_name="Acme Corp",
    )


# --- what is shown -----------------------------------------------------------------------


def test_changelist_shows_the_columns_and_never_decrypts(
    admin_client, secret_connection, canaries, monkeypatch
):
    make_connection(status=ConnectionStatus.NEEDS_RECONNECT, dd_org_name="Broken Inc")

    def no_decryption(*args, **kwargs):
        raise AssertionError("a list view decrypted a secret")

    monkeypatch.setattr(crypto, "decrypt", no_decryption)
    response = admin_client.get(CHANGELIST)

    page = html(response)
    assert response.status_code == 200
    values = ["acme-owner → Datadog org ‘Acme Corp’ (US1)", "Active", "Needs reconnect",
              f"…{canaries['api_key'][-4:]}"]  # fmt: skip
    headers = ["Connection", "Status", "API key", "Activity", "Success:", "Checked:"]
    for text in values + headers:
        assert text.lower() in page.lower(), text
    canaries.assert_absent(page, "the connection list")
    assert secret_connection.api_key is not None
    assert secret_connection.api_key.ciphertext not in page


def test_filters_and_search(admin_client, secret_connection):
    make_connection(status=ConnectionStatus.REVOKED, dd_org_name="Gone Ltd")
    assert "Gone Ltd" not in html(admin_client.get(CHANGELIST + "?status__exact=active"))
    assert "Gone Ltd" in html(admin_client.get(CHANGELIST + "?status__exact=revoked"))
    found = html(admin_client.get(CHANGELIST + "?q=Acme"))
    assert "Acme Corp" in found and "Gone Ltd" not in found


def test_change_page_is_read_only_shows_no_secret_and_offers_the_actions(
    admin_client, secret_connection, canaries, monkeypatch
):
    monkeypatch.setattr(fields.Secret, "reveal", lambda self: pytest.fail("decrypted"))
    page = html(admin_client.get(change_url(secret_connection)))
    canaries.assert_absent(page, "the connection page")
    assert "Access token: stored" in page and "Refresh token: stored" in page
    assert f"…{canaries['api_key'][-4:]}" in page
    assert 'name="_save"' not in page  # nothing is saved through a form
    for label in ("Refresh now", "Check health", "Send test event"):
        assert f'class="datadog-partner-action">{label}</a>' in page
    # Revoke is styled as destructive; the reconnect link is copied in one click.
    assert 'class="datadog-partner-action ddp-danger">Revoke</a>' in page
    link = f"https://vendor.example/datadog/connections/{secret_connection.pk}/"
    assert f'data-ddp-copy="{link}">Copy reconnect link</a>' in page
    assert "Create the API key again</a>" not in page  # only for key_missing
    assert "<h1>Datadog connection</h1>" in page  # not "View Datadog connection"
    assert "<h2>acme-owner → Datadog org ‘Acme Corp’ (US1)</h2>" in page


def test_nothing_can_be_added_or_edited_and_only_revoked_connections_deleted(admin_client):
    active = make_connection()
    revoked = make_connection(status=ConnectionStatus.REVOKED)
    assert admin_client.get(CHANGELIST + "add/").status_code == 403
    assert admin_client.post(change_url(active), {"status": "revoked"}).status_code == 403
    assert Connection.objects.get(pk=active.pk).status == ConnectionStatus.ACTIVE
    delete = reverse("admin:datadog_partner_connection_delete", args=[active.pk])
    assert admin_client.get(delete).status_code == 403
    delete = reverse("admin:datadog_partner_connection_delete", args=[revoked.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert not Connection.objects.filter(pk=revoked.pk).exists()


def test_alarm_banner_on_the_connection_list_until_cleared(admin_client):
    raise_alarm("invalid_client", "Datadog refused this OAuth client's credentials.")
    page = html(admin_client.get(CHANGELIST))
    assert 'role="alert"' in page and "refused this OAuth client" in page

    alarm = Alarm.objects.get()
    response = admin_client.post(
        "/admin/datadog_partner/alarm/",
        {"action": "clear", "_selected_action": [alarm.pk]},
        follow=True,
    )
    assert "1 alarm(s) cleared" in html(response)
    assert 'role="alert"' not in html(admin_client.get(CHANGELIST))


# --- the actions -------------------------------------------------------------------------


def test_changelist_action_leads_to_the_confirmation_page(admin_client):
    first, second = make_connection(), make_connection()
    response = admin_client.post(
        CHANGELIST, {"action": "revoke_action", "_selected_action": [first.pk, second.pk]}
    )
    assert response.status_code == 302
    assert response["Location"] == confirm_url("revoke", first, second)


def test_revoke_confirmation_then_result(admin_client, mocked_http):
    mocked_http.post(REVOKE_URL, body="")
    connection = make_connection(dd_org_name="Acme Corp")

    page = html(admin_client.get(confirm_url("revoke", connection)))
    assert "Revoke: are you sure?" in page
    assert 'value="Yes, revoke"' in page and "No, take me back" in page
    assert len(mocked_http.calls) == 0  # showing the page changes nothing

    response = admin_client.post(confirm_url("revoke", connection), {"ids": str(connection.pk)})
    assert response.status_code == 302 and response["Location"] == change_url(connection)
    result = html(admin_client.get(response["Location"]))
    assert "OAuth Client API Key" in result and "organization-settings/api-keys" in result
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.REVOKED
    # The customer reads the reason: no staff user name there; the History has it.
    assert stored.status_reason == "Disconnected by our support team."
    entry = LogEntry.objects.get(object_id=str(connection.pk))
    assert entry.user.get_username() == "admin"
    assert entry.get_change_message().startswith("Revoke: Disconnected: Datadog revoked")


def test_revoke_during_an_outage_reports_the_background_retry(admin_client, mocked_http):
    mocked_http.post(REVOKE_URL, status=503)
    connection = make_connection()
    response = admin_client.post(
        confirm_url("revoke", connection), {"ids": str(connection.pk)}, follow=True
    )
    assert "retried automatically in the background" in html(response)
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.REVOKING


def test_refresh_now(admin_client, mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    connection = make_connection()
    assert 'value="Yes, refresh now"' in html(admin_client.get(confirm_url("refresh", connection)))
    response = admin_client.post(
        confirm_url("refresh", connection), {"ids": str(connection.pk)}, follow=True
    )
    assert "Token refreshed; the new access token is valid until" in html(response)
    assert len(mocked_http.calls) == 1


def test_refresh_failure_is_a_clear_error_message(admin_client, mocked_http):
    mocked_http.post(TOKEN_URL, status=400, body=oauth_error("invalid_grant"))
    connection = make_connection()
    response = admin_client.post(
        confirm_url("refresh", connection), {"ids": str(connection.pk)}, follow=True
    )
    page = html(response)
    assert response.status_code == 200
    assert "needs to be reconnected" in page and 'class="error"' in page


def test_invalid_client_stops_a_bulk_action_after_the_first_connection(admin_client, mocked_http):
    mocked_http.post(TOKEN_URL, status=401, body=oauth_error("invalid_client"))
    connections = [make_connection(), make_connection()]
    response = admin_client.post(
        confirm_url("refresh", *connections), {"ids": ",".join(str(c.pk) for c in connections)},
        follow=True,
    )  # fmt: skip
    assert "Stopped: every further connection would fail alike." in html(response)
    assert len(mocked_http.calls) == 1


def test_check_health(admin_client, mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    mocked_http.get(VALIDATE_URL, json={"valid": True})
    connection = make_connection()
    assert 'value="Yes, check health"' in html(admin_client.get(confirm_url("check", connection)))
    response = admin_client.post(
        confirm_url("check", connection), {"ids": str(connection.pk)}, follow=True
    )
    assert "Healthy" in html(response)


def test_send_test_event(admin_client):
    connection = make_connection()
    page = html(admin_client.get(confirm_url("test_event", connection)))
    assert 'value="Yes, send test event"' in page
    response = admin_client.post(
        confirm_url("test_event", connection), {"ids": str(connection.pk)}, follow=True
    )
    row = OutboxEvent.objects.get(connection=connection)
    assert f"Test event queued (outbox #{row.pk})" in html(response)


def test_copy_reconnect_link_shows_an_absolute_url_without_credentials(
    admin_client, secret_connection, canaries
):
    revoked = make_connection(status=ConnectionStatus.REVOKED)
    page = html(admin_client.get(confirm_url("reconnect_link", secret_connection, revoked)))
    for connection in (secret_connection, revoked):  # any state
        url = f"https://vendor.example/datadog/connections/{connection.pk}/"
        assert f'value="{url}"' in page
    assert "aria-label" in page or '<label for="reconnect-link-' in page
    assert '<form method="post">' not in page
    canaries.assert_absent(page, "the reconnect link page")


def test_create_the_api_key_again_for_a_key_missing_connection(admin_client, mocked_http):
    mocked_http.post(
        f"{API}/api/v2/api_keys/marketplace",
        status=201,
        json={"data": {"id": "key-id-1", "type": "api_keys",
                       "attributes": {"key": "f" * 32, "last4": "ffff"}}},
    )  # fmt: skip
    connection = make_connection(api_key=None, status=ConnectionStatus.KEY_MISSING)
    assert "Create the API key again</a>" in html(admin_client.get(change_url(connection)))
    page = html(admin_client.get(confirm_url("create_api_key", connection)))
    assert 'value="Yes, create the API key again"' in page
    response = admin_client.post(
        confirm_url("create_api_key", connection), {"ids": str(connection.pk)}, follow=True
    )
    assert "API key created; the connection is active." in html(response)
    stored = Connection.objects.get(pk=connection.pk)
    assert (stored.status, stored.api_key_last4) == (ConnectionStatus.ACTIVE, "ffff")


def test_an_action_that_applies_to_none_of_the_selection_does_nothing(admin_client, mocked_http):
    connection = make_connection()
    page = html(admin_client.get(confirm_url("create_api_key", connection)))
    assert (
        "Not included" in page and "Nothing to do." in page and '<form method="post">' not in page
    )
    admin_client.post(confirm_url("create_api_key", connection), {"ids": str(connection.pk)})
    assert len(mocked_http.calls) == 0


def test_unknown_action_and_empty_selection(admin_client):
    assert admin_client.get(confirm_url("explode", make_connection())).status_code == 404
    response = admin_client.get(
        reverse("admin:datadog_partner_connection_confirm", args=["revoke"]) + "?ids=999999"
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    "ids",
    ["\u00b2", "0,\u00b2", "9" * 30, "0," + "9" * 5000],
    ids=["superscript", "mixed", "huge", "long"],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_hostile_ids_name_no_connection_instead_of_a_500(admin_client, method, ids):
    """``str.isdigit`` accepts "²" (``int`` refuses it) and numbers past the database's."""
    connection = make_connection()
    url = reverse("admin:datadog_partner_connection_confirm", args=["revoke"])
    response = getattr(admin_client, method)(url + ("?" if method == "get" else ""), {"ids": ids})
    assert response.status_code in (200, 302)
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.ACTIVE


# --- permissions and CSRF ------------------------------------------------------------------


@pytest.mark.parametrize(
    "codenames",
    [("view_connection",), ("view_connection", "change_connection", "delete_connection")],
    ids=["view only", "the model's own permissions"],
)
def test_staff_without_the_manage_permission_can_copy_links_but_not_act(
    django_user_model, mocked_http, codenames
):
    staff = signed_in_with(django_user_model, "staff", *codenames, is_staff=True)
    connection = make_connection()
    before = all_rows()
    assert staff.get(confirm_url("reconnect_link", connection)).status_code == 200
    for action in ACTIONS.values():
        if action.perform is None:
            continue
        assert staff.get(confirm_url(action.name, connection)).status_code == 403
        posted = staff.post(confirm_url(action.name, connection), {"ids": str(connection.pk)})
        assert posted.status_code == 403
        chosen = {"action": f"{action.name}_action", "_selected_action": [connection.pk]}
        assert "/confirm/" not in staff.post(CHANGELIST, chosen).get("Location", "")
    menu = html(staff.get(CHANGELIST))
    assert 'value="revoke_action"' not in menu and 'value="reconnect_link_action"' in menu
    buttons = html(staff.get(change_url(connection)))
    assert "datadog-partner-action" in buttons and "confirm/revoke/" not in buttons
    assert all_rows() == before
    assert len(mocked_http.calls) == 0


def test_the_manage_permission_runs_the_actions(django_user_model, mocked_http):
    manager = signed_in_with(
        django_user_model, "staff", "view_connection", "manage_connection", is_staff=True
    )
    connection = make_connection()
    assert "confirm/revoke/" in html(manager.get(change_url(connection)))
    mocked_http.post(REVOKE_URL, status=200)
    manager.post(confirm_url("revoke", connection), {"ids": str(connection.pk)})
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.REVOKED


def test_every_admin_action_of_the_app_declares_its_permission():
    models = apps.get_app_config("datadog_partner").get_models()
    app_admins = [admin.site.get_model_admin(m) for m in models if admin.site.is_registered(m)]
    assert len(app_admins) >= 5
    undeclared = []
    for model_admin in app_admins:
        site_wide = [name for name, _func in model_admin.admin_site.actions]
        for name in [*site_wide, *(model_admin.actions or ())]:
            action = model_admin.get_action(name)
            assert action is not None, name
            # Django 6.1 returns an Action (indexing it is deprecated); earlier a tuple.
            func = getattr(action, "func", None) or action[0]
            declared = getattr(func, "allowed_permissions", ())
            if not declared or not all(
                hasattr(model_admin, f"has_{p}_permission") for p in declared
            ):
                undeclared.append(f"{type(model_admin).__name__}.{name}")
    assert undeclared == []


def test_confirmation_post_requires_the_csrf_token(django_user_model, mocked_http):
    admin = django_user_model.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    connection = make_connection()
    response = client.post(confirm_url("revoke", connection), {"ids": str(connection.pk)})
    assert response.status_code == 403
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.ACTIVE


# --- authorizations and alarms -------------------------------------------------------------


def test_authorization_requests_are_read_only_and_hide_state_and_verifier(admin_client, canaries):
    user = make_owner("connecting-user")
    request = AuthorizationRequest(
        state=canaries["code"], user=user, binding_hash="b" * 64,
        domain="datadoghq.eu", site="https://app.datadoghq.eu",
    )  # fmt: skip
    request.set_owner(user)
    request.code_verifier = canaries["refresh_token"]
    request.save()
    listing = html(admin_client.get("/admin/datadog_partner/authorizationrequest/"))
    detail = html(
        admin_client.get(f"/admin/datadog_partner/authorizationrequest/{request.pk}/change/")
    )
    assert "connecting-user" in listing and "datadoghq.eu" in detail
    canaries.assert_absent(listing + detail, "the authorization admin")
    assert "b" * 64 not in detail
    assert admin_client.get("/admin/datadog_partner/authorizationrequest/add/").status_code == 403
