"""Health checks: token refresh + key validation, deleted owners, the hourly slice."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from django_datadog_partner import tasks
from django_datadog_partner.connections import check_health, run_scheduled_health_checks
from django_datadog_partner.connections.health import CATCH_UP_FACTOR, owner_exists
from django_datadog_partner.exceptions import InvalidClientError
from django_datadog_partner.models import Connection, ConnectionStatus
from django_datadog_partner.status import API_KEY_REJECTED_REASON
from django_datadog_partner.testing import make_connection
from tests.lifecycle_support import (
    REVOKE_URL,
    TOKEN_URL,
    VALIDATE_URL,
    make_owner,
    oauth_error,
    token_json,
)
from tests.testapp.models import Workspace

pytestmark = pytest.mark.django_db

VALID = {"json": {"valid": True}}


def calls_to(mocked_http, url: str) -> list:
    return [c for c in mocked_http.calls if c.request.url.split("?")[0] == url]


def test_healthy_connection_refreshes_its_token_and_validates_its_key(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    mocked_http.get(VALIDATE_URL, **VALID)
    key = "ak0123456789abcdef0123456789abcd"
    connection = make_connection(expires_in=3600, api_key=key)  # a fresh token is refreshed anyway

    report = check_health(connection)

    assert report.healthy and report.status == ConnectionStatus.ACTIVE
    assert len(calls_to(mocked_http, TOKEN_URL)) == 1
    (validate,) = calls_to(mocked_http, VALIDATE_URL)
    assert validate.request.headers["DD-API-KEY"] == key
    assert "Authorization" not in validate.request.headers
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.health_checked_at is not None
    assert stored.access_token is not None and stored.access_token.reveal() == "at-new"


def test_rejected_key_is_marked_and_recovers_when_datadog_accepts_it_again(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    mocked_http.get(VALIDATE_URL, status=403, json={"errors": ["Forbidden"]})
    connection = make_connection()

    report = check_health(connection)

    assert not report.healthy
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.API_KEY_REJECTED
    assert stored.status_reason == API_KEY_REJECTED_REASON  # the customer reads it
    assert "403" not in stored.status_reason and "/api/" not in stored.status_reason
    assert stored.last_error_code == "api_key_rejected"

    mocked_http.replace("GET", VALIDATE_URL, **VALID)
    assert check_health(stored).healthy
    recovered = Connection.objects.get(pk=connection.pk)
    assert recovered.status == ConnectionStatus.ACTIVE
    # The recovery clears the error: the list no longer shows a problem that is over.
    assert (recovered.last_error_code, recovered.last_error_at) == ("", None)


def test_uninstall_is_noticed_by_the_refresh_and_the_key_is_not_checked(mocked_http):
    mocked_http.post(TOKEN_URL, status=400, body=oauth_error("invalid_grant"))
    connection = make_connection()
    report = check_health(connection)
    assert not report.healthy and report.status == ConnectionStatus.NEEDS_RECONNECT
    assert "reconnected" in report.message
    assert calls_to(mocked_http, VALIDATE_URL) == []


@pytest.mark.parametrize(
    ("token", "validate"),
    [
        ({"status": 503}, VALID),
        ({"body": requests.ConnectTimeout()}, VALID),
        ({"json": token_json()}, {"status": 500}),
        ({"json": token_json()}, {"status": 429, "headers": {"Retry-After": "5"}}),
        ({"json": token_json()}, {"body": requests.ReadTimeout()}),
    ],
)
def test_outages_never_change_the_status(mocked_http, token, validate):
    mocked_http.post(TOKEN_URL, **token)
    mocked_http.get(VALIDATE_URL, **validate)
    connection = make_connection()
    report = check_health(connection)
    assert not report.healthy
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.ACTIVE
    assert stored.last_error_code != ""
    assert stored.health_checked_at is not None


def test_connection_without_api_key_is_key_missing_with_instructions(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    connection = make_connection(api_key=None)
    report = check_health(connection)
    assert not report.healthy and report.status == ConnectionStatus.KEY_MISSING
    assert "Create the API key again" in report.message
    assert calls_to(mocked_http, VALIDATE_URL) == []


def test_connection_whose_owner_was_deleted_is_revoked(mocked_http):
    mocked_http.post(REVOKE_URL, body="")
    workspace = Workspace.objects.create(name="gone")
    connection = make_connection(workspace)
    survivor = make_connection(Workspace.objects.create(name="kept"))
    workspace.delete()

    assert owner_exists(survivor) and not owner_exists(connection)
    report = check_health(connection)

    assert not report.healthy and report.status == ConnectionStatus.REVOKED
    assert report.message.startswith("Its owner was deleted.")
    assert len(calls_to(mocked_http, REVOKE_URL)) == 2
    assert Connection.objects.get(pk=connection.pk).status_reason == "Its owner was deleted."


def test_owner_id_that_cannot_be_a_key_counts_as_deleted():
    connection = make_connection(Workspace.objects.create(name="w"))
    connection.owner_object_id = "not-a-uuid"
    assert not owner_exists(connection)


def test_unreadable_connection_recovers_once_its_secrets_decrypt_again(
    mocked_http, partner_settings
):
    mocked_http.post(TOKEN_URL, json=token_json())
    mocked_http.get(VALIDATE_URL, **VALID)
    connection = make_connection(status=ConnectionStatus.CREDENTIALS_UNREADABLE)
    with partner_settings(ENCRYPTION_KEYS=["0MDLmGX3rQnpZ4RvL7NTgGd0yZQ1uX6LJ4cT5V8nU2E="]):
        assert not check_health(connection).healthy
    assert len(mocked_http.calls) == 0
    assert check_health(connection).healthy
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.ACTIVE


@pytest.mark.parametrize(
    "status",
    [ConnectionStatus.NEEDS_RECONNECT, ConnectionStatus.REVOKING, ConnectionStatus.REVOKED],
)
def test_connections_awaiting_a_person_or_a_retry_are_not_checked(mocked_http, status):
    connection = make_connection(status=status)
    report = check_health(connection)
    assert not report.healthy and report.message.startswith("Not checked")
    assert len(mocked_http.calls) == 0


def test_scheduled_run_checks_a_slice_of_the_due_connections_oldest_first(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    mocked_http.get(VALIDATE_URL, **VALID)
    now = timezone.now()
    connections = [make_connection() for _ in range(48)]
    ages = {c.pk: timedelta(hours=24 + i) for i, c in enumerate(connections[:30])}
    for c in connections[30:]:
        Connection.objects.filter(pk=c.pk).update(health_checked_at=now - timedelta(hours=2))
    for pk, age in ages.items():
        Connection.objects.filter(pk=pk).update(health_checked_at=now - age)
    never = make_connection()  # never checked: first in line
    make_connection(status=ConnectionStatus.REVOKED)  # never due

    summary = tasks.check_connections_health()

    # 49 checkable connections -> a share of ceil(49/24)=3, times the catch-up factor.
    assert summary == {
        "due": 3 * CATCH_UP_FACTOR,
        "checked": 3 * CATCH_UP_FACTOR,
        "healthy": 3 * CATCH_UP_FACTOR,
        "unhealthy": 0,
        "stopped_early": False,
    }
    checked = set(
        Connection.objects.filter(health_checked_at__gte=now).values_list("pk", flat=True)
    )
    oldest = sorted(ages, key=lambda pk: ages[pk], reverse=True)[: 3 * CATCH_UP_FACTOR - 1]
    assert checked == {never.pk, *oldest}


def test_scheduled_run_stops_at_invalid_client_and_changes_no_connection(mocked_http):
    mocked_http.post(TOKEN_URL, status=401, body=oauth_error("invalid_client"))
    for _ in range(5):
        make_connection()
    summary = run_scheduled_health_checks()
    assert summary.stopped_early and summary.checked == 0
    assert len(calls_to(mocked_http, TOKEN_URL)) == 1
    assert set(Connection.objects.values_list("status", flat=True)) == {ConnectionStatus.ACTIVE}


def test_invalid_client_propagates_from_a_single_check(mocked_http):
    mocked_http.post(TOKEN_URL, status=401, body=oauth_error("invalid_client"))
    with pytest.raises(InvalidClientError):
        check_health(make_connection())


def test_owner_can_be_any_host_model():
    assert owner_exists(make_connection(make_owner("someone")))


def test_key_missing_keeps_the_connect_flows_instructions(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    connection = make_connection(
        api_key=None, status=ConnectionStatus.KEY_MISSING, status_reason="Revoke it, then …"
    )
    report = check_health(connection)
    assert not report.healthy and report.message.startswith("Revoke it, then … ")
    assert "Create the API key again" in report.message  # what to do, for the operator
    assert Connection.objects.get(pk=connection.pk).status_reason == "Revoke it, then …"


def test_key_missing_connection_whose_stored_key_validates_becomes_active(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    mocked_http.get(VALIDATE_URL, **VALID)
    connection = make_connection(status=ConnectionStatus.KEY_MISSING)
    assert check_health(connection).healthy
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.ACTIVE
