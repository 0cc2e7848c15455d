"""Every lifecycle command, run as from a shell: output and exit code."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from django import db
from django.core.management import ManagementUtility, get_commands, load_command_class
from django_q.models import Schedule

from django_datadog_partner import crypto
from django_datadog_partner.connections import raise_alarm
from django_datadog_partner.models import Connection, ConnectionStatus, OutboxEvent
from django_datadog_partner.schedules import SCHEDULES
from django_datadog_partner.testing import make_connection
from tests.lifecycle_support import (
    REVOKE_URL,
    TOKEN_URL,
    VALIDATE_URL,
    make_owner,
    oauth_error,
    token_json,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_the_test_database_open(monkeypatch):
    # ``manage.py`` closes every database connection when a command ends; the test's
    # transaction must survive that.
    monkeypatch.setattr(db.connections, "close_all", lambda: None)


def run(*argv: str) -> tuple[int, str, str]:
    """``manage.py <argv>`` as from a shell: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            ManagementUtility(["manage.py", *argv]).execute()
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


# --- status -----------------------------------------------------------------------------


def test_status_with_no_connections():
    code, out, _ = run("datadog_partner_status")
    assert code == 0 and "No Datadog connections." in out


def test_status_table_json_and_filter_never_decrypt(monkeypatch, canaries):
    make_connection(make_owner("acme-owner"), api_key=canaries["api_key"], dd_org_name="Acme")
    make_connection(status=ConnectionStatus.NEEDS_RECONNECT, dd_org_name="Broken")
    raise_alarm("invalid_client", "Datadog refused this OAuth client's credentials.")
    monkeypatch.setattr(crypto, "decrypt", lambda *a: pytest.fail("status decrypted a secret"))

    code, out, _ = run("datadog_partner_status")
    assert code == 0
    assert out.splitlines()[0].split()[:4] == ["ID", "STATUS", "CONNECTION", "API_KEY"]
    assert "acme-owner → Datadog org ‘Acme’ (US1)" in out
    assert f"…{canaries['api_key'][-4:]}" in out
    assert "2 connection(s): 1 active, 1 needs_reconnect" in out
    assert "ALARM invalid_client (x1)" in out
    assert "Schedules missing or outdated" in out and "datadog_partner_schedule" in out
    canaries.assert_absent(out, "the status output")

    code, out, _ = run("datadog_partner_status", "--json")
    report = json.loads(out)
    assert code == 0
    assert report["by_status"] == {"active": 1, "needs_reconnect": 1}
    assert [c["org"] for c in report["connections"]] == ["Acme", "Broken"]
    assert report["alarms"][0]["code"] == "invalid_client"
    assert len(report["schedules_missing"]) == len(SCHEDULES)

    _, out, _ = run("datadog_partner_status", "--json", "--status", "needs_reconnect")
    assert [c["org"] for c in json.loads(out)["connections"]] == ["Broken"]


def test_status_filter_matching_nothing_says_what_exists():
    make_connection(status=ConnectionStatus.NEEDS_RECONNECT)
    make_connection(status=ConnectionStatus.REVOKED)
    make_connection(status=ConnectionStatus.REVOKED)
    code, out, _ = run("datadog_partner_status", "--status", "active")
    assert code == 0
    assert "No active connection; 3 in other statuses: 1 needs_reconnect, 2 revoked." in out


def test_every_option_of_every_command_has_help_text():
    commands = [name for name in get_commands() if name.startswith("datadog_partner_")]
    assert len(commands) >= 10
    missing = [
        f"{name} {action.dest}"
        for name in commands
        for action in load_command_class("django_datadog_partner", name)
        .create_parser("manage.py", name)
        ._actions
        if not (action.help or "").strip()
    ]
    assert not missing, "options without help: " + ", ".join(missing)


# --- refresh / check ----------------------------------------------------------------------


def test_refresh_given_ids(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    connection = make_connection(dd_org_name="Acme")
    code, out, _ = run("datadog_partner_refresh", str(connection.pk))
    assert code == 0
    owner = connection.owner_name
    assert f"#{connection.pk} {owner} → Datadog org ‘Acme’ (US1): new access token, valid" in out
    assert "Refreshed 1 of 1 connection(s)." in out


def test_refresh_all_reports_each_failure_and_exits_non_zero(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    mocked_http.post(TOKEN_URL, status=400, body=oauth_error("invalid_grant"))
    good, bad = make_connection(), make_connection()
    make_connection(status=ConnectionStatus.REVOKED)  # not selected by --all
    code, out, err = run("datadog_partner_refresh", "--all")
    assert code == 1
    assert f"#{good.pk} " in out and f"#{bad.pk} " in out and "needs to be reconnected" in out
    assert "Refreshed 1 of 2 connection(s). 1 failed" in err
    assert len(mocked_http.calls) == 2


def test_refresh_stops_at_invalid_client(mocked_http):
    mocked_http.post(TOKEN_URL, status=401, body=oauth_error("invalid_client"))
    make_connection(), make_connection()
    code, _, err = run("datadog_partner_refresh", "--all")
    assert code == 1 and "Stopped: every further connection would fail alike." in err
    assert len(mocked_http.calls) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "Give at least one connection id (or --all)."),
        (("1", "--all"), "Give connection ids or --all, not both."),
        (("999999",), "No Datadog connection with id 999999."),
    ],
)
def test_refresh_selection_errors(argv, message):
    code, _, err = run("datadog_partner_refresh", *argv)
    assert code == 1 and message in err


@pytest.mark.parametrize(
    "command", ["datadog_partner_refresh", "datadog_partner_check", "datadog_partner_revoke"]
)
def test_an_id_past_any_connections_is_a_usage_error_not_a_traceback(command):
    code, _, err = run(command, "9" * 20)
    assert code == 1 and "Traceback" not in err
    assert "No Datadog connection with id 99999999999999999999." in err


def test_check_healthy_and_unhealthy(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    mocked_http.get(VALIDATE_URL, json={"valid": True})
    healthy = make_connection()
    code, out, _ = run("datadog_partner_check", str(healthy.pk))
    assert code == 0 and "Healthy: 1 of 1 connection(s)." in out

    mocked_http.replace("GET", VALIDATE_URL, status=403, json={"errors": ["Forbidden"]})
    code, out, err = run("datadog_partner_check", "--all")
    assert code == 1
    assert "Datadog rejected the API key" in out and "Healthy: 0 of 1" in err
    assert Connection.objects.get(pk=healthy.pk).status == ConnectionStatus.API_KEY_REJECTED


# --- revoke -------------------------------------------------------------------------------


def test_revoke_prints_the_api_key_instruction(mocked_http):
    mocked_http.post(REVOKE_URL, body="")
    connection = make_connection()
    code, out, _ = run("datadog_partner_revoke", str(connection.pk), "--reason", "Churned.")
    assert code == 0
    assert "OAuth Client API Key" in out and "Revoked 1 of 1 connection(s)." in out
    assert Connection.objects.get(pk=connection.pk).status_reason == "Churned."


def test_revoke_during_an_outage_exits_non_zero_and_says_it_will_retry(mocked_http):
    mocked_http.post(REVOKE_URL, status=503)
    connection = make_connection()
    code, out, err = run("datadog_partner_revoke", str(connection.pk))
    assert code == 1
    assert "retried automatically in the background" in out
    assert "Revoked 0 of 1" in err


def test_revoke_has_no_all_switch():
    code, _, err = run("datadog_partner_revoke", "--all")
    assert code != 0 and "--all" in err


# --- send test event -----------------------------------------------------------------------


def test_send_test_event():
    connection = make_connection()
    code, out, _ = run("datadog_partner_send_test_event", str(connection.pk), "--title", "Hi")
    row = OutboxEvent.objects.get(connection=connection)
    assert code == 0 and f"Queued test event (outbox #{row.pk})" in out
    assert f"for #{connection.pk} {connection.label}." in out  # named as everywhere
    assert row.payload["title"] == "Hi"


@pytest.mark.parametrize("status", [ConnectionStatus.NEEDS_RECONNECT, ConnectionStatus.REVOKED])
def test_send_test_event_refuses_connections_that_cannot_deliver(status):
    connection = make_connection(status=status)
    code, _, err = run("datadog_partner_send_test_event", str(connection.pk))
    assert code == 1 and f"#{connection.pk} {connection.label} is " in err and "not active" in err
    assert not OutboxEvent.objects.exists()


def test_send_test_event_unknown_id():
    code, _, err = run("datadog_partner_send_test_event", "424242")
    assert code == 1 and "No Datadog connection with id 424242." in err


# --- rotate keys ------------------------------------------------------------------------------


def test_rotate_keys_exit_codes(partner_settings):
    old, new = crypto.generate_key(), crypto.generate_key()
    with partner_settings(ENCRYPTION_KEYS=[old]):
        make_connection()
    with partner_settings(ENCRYPTION_KEYS=[new, old]):
        code, _, err = run("datadog_partner_rotate_keys", "--check")
        assert code == 1 and "3 values remain on retired keys" in err
        code, out, _ = run("datadog_partner_rotate_keys")
        assert code == 0 and "Re-encrypted 3 secret values" in out
        assert "0 values remain on retired keys" in out


# --- schedule -------------------------------------------------------------------------------


def test_schedule_creates_then_is_idempotent_then_repairs():
    code, out, _ = run("datadog_partner_schedule")
    assert code == 0 and out.count("  created  ") == len(SCHEDULES)
    stored = {s.name: s for s in Schedule.objects.all()}
    sweeper = stored["datadog_partner: outbox sweeper"]
    assert (sweeper.func, sweeper.schedule_type, sweeper.minutes) == (
        "django_datadog_partner.tasks.sweep_outbox",
        Schedule.MINUTES,
        1,
    )
    health = stored["datadog_partner: health checks"]
    assert (health.func, health.schedule_type) == (
        "django_datadog_partner.tasks.check_connections_health",
        Schedule.HOURLY,
    )

    code, out, _ = run("datadog_partner_schedule")
    assert out.count("unchanged") == len(SCHEDULES)
    assert Schedule.objects.count() == len(SCHEDULES)

    Schedule.objects.filter(name="datadog_partner: revocation retries").update(minutes=60)
    _, out, _ = run("datadog_partner_schedule")
    assert "  updated  datadog_partner: revocation retries" in out
    assert Schedule.objects.get(name="datadog_partner: revocation retries").minutes == 5


def test_scheduled_task_paths_import():
    from django.utils.module_loading import import_string

    for spec in SCHEDULES:
        assert callable(import_string(spec.func)), spec.func


# --- listing --------------------------------------------------------------------------------


def test_listing_prints_what_to_paste_and_the_requirements(partner_settings):
    with partner_settings(BASE_URL="https://app.acme.com", SOURCE_TYPE_NAME="acme"):
        code, out, err = run("datadog_partner_listing", "--strict", "--product", "Acme")
    assert code == 0 and err == ""
    assert "Onboarding URL:  https://app.acme.com/datadog/connect/" in out
    assert "Redirect URI:    https://app.acme.com/datadog/callback/" in out
    assert "Scopes:          api_keys_write" in out
    assert "## Uninstallation" in out and "OAuth Client API Key" in out and "Acme" in out
    assert 'source "acme"' in out and "lowercase" in out
    assert '"metric check" metric' in out


@pytest.mark.parametrize(
    ("base_url", "warnings"),
    [
        ("http://localhost:8000", ["is not https", "local or test host"]),
        ("https://127.0.0.1", ["local or test host"]),
        ("https://vendor.example", ["local or test host"]),
        ("http://app.acme.com", ["is not https"]),
    ],
)
def test_listing_warns_about_test_values(base_url, warnings, partner_settings):
    with partner_settings(BASE_URL=base_url, SOURCE_TYPE_NAME="acme"):
        code, _, err = run("datadog_partner_listing")
        assert code == 0 and all(w in err for w in warnings)
        code, _, err = run("datadog_partner_listing", "--strict")
        assert code == 1 and f"{len(warnings)} warning(s)" in err


def test_listing_warns_about_the_default_source_name_and_fails_without_base_url(partner_settings):
    _, _, err = run("datadog_partner_listing")
    assert "SOURCE_TYPE_NAME is the default 'my_apps'" in err
    with partner_settings(BASE_URL=None):
        code, _, err = run("datadog_partner_listing")
    assert code == 1 and "BASE_URL" in err
