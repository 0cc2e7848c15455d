"""Revocation (AT-33..35 operation side): order, wipe, cancel events, retries, idempotence."""

from __future__ import annotations

import itertools
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.utils import timezone

from django_datadog_partner import tasks
from django_datadog_partner.connections import retry_pending_revocations, revoke
from django_datadog_partner.models import (
    Alarm,
    Connection,
    ConnectionStatus,
    OutboxEvent,
    OutboxKind,
    OutboxStatus,
)
from django_datadog_partner.testing import make_connection
from tests.lifecycle_support import (
    REVOKE_URL,
    TOKEN_URL,
    form,
    make_owner,
    oauth_error,
    secrets_of,
    token_json,
)

pytestmark = pytest.mark.django_db


def outbox_row(connection: Connection, status: str = OutboxStatus.PENDING) -> OutboxEvent:
    return OutboxEvent.objects.create(
        kind=OutboxKind.EVENT,
        payload={"title": "t", "text": "x"},
        connection=connection,
        status=status,
    )


def test_revoke_revokes_refresh_then_access_token_wipes_secrets_and_cancels_events(mocked_http):
    mocked_http.post(REVOKE_URL, body="")
    connection = make_connection(
        site="https://acme.datadoghq.com", api_key="ak" + "0" * 26 + "abcd"
    )
    pending, parked = outbox_row(connection), outbox_row(connection, OutboxStatus.PARKED)
    delivered = outbox_row(connection, OutboxStatus.DELIVERED)
    elsewhere = outbox_row(make_connection())

    outcome = revoke(connection, reason="Customer asked.")

    assert [form(c.request) for c in mocked_http.calls] == [
        {
            "client_id": "test-client-id",
            "client_secret": "test-client-secret",
            "token": "rt-old",
            "token_type_hint": "refresh_token",
        },
        {
            "client_id": "test-client-id",
            "client_secret": "test-client-secret",
            "token": "at-old",
            "token_type_hint": "access_token",
        },
    ]
    assert outcome.done and outcome.status == ConnectionStatus.REVOKED
    assert "“OAuth Client API Key” (ending in abcd)" in outcome.message
    assert "https://acme.datadoghq.com/organization-settings/api-keys" in outcome.message
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.REVOKED
    assert stored.status_reason == "Customer asked."
    assert secrets_of(stored) == {"access_token": None, "refresh_token": None, "api_key": None}
    assert (stored.api_key_fingerprint, stored.expires_at) == ("", None)
    assert stored.api_key_last4 == "abcd"  # kept: it tells the customer which key to revoke
    statuses = {
        row.pk: row.status for row in OutboxEvent.objects.filter(pk__in=[pending.pk, parked.pk])
    }
    assert set(statuses.values()) == {OutboxStatus.CANCELLED}
    delivered.refresh_from_db()
    elsewhere.refresh_from_db()
    assert (delivered.status, elsewhere.status) == (OutboxStatus.DELIVERED, OutboxStatus.PENDING)


def test_the_actor_is_logged_but_kept_out_of_the_reason_the_customer_reads(mocked_http, caplog):
    mocked_http.post(REVOKE_URL, body="")
    connection = make_connection()
    staff = make_owner("alice")
    caplog.set_level("INFO", logger="django_datadog_partner")
    revoke(connection, actor=staff)
    assert Connection.objects.get(pk=connection.pk).status_reason == "Disconnect requested."
    assert f"Datadog connection {connection.pk}: disconnect asked by alice." in caplog.text


def test_revoking_twice_is_harmless(mocked_http):
    mocked_http.post(REVOKE_URL, body="")
    connection = make_connection()
    first = revoke(connection)
    second = revoke(Connection.objects.get(pk=connection.pk))
    assert first.done and second.done
    assert "already disconnected" in second.message
    assert "OAuth Client API Key" in second.message
    assert len(mocked_http.calls) == 2  # the second call contacted nobody


@pytest.mark.parametrize(
    "failure",
    [{"status": 503, "headers": {"Retry-After": "30"}}, {"body": requests.ReadTimeout("slow")}],
)
def test_outage_keeps_revoking_with_secrets_then_the_background_retry_finishes(
    mocked_http, failure
):
    mocked_http.post(REVOKE_URL, **failure)
    connection = make_connection()
    pending = outbox_row(connection)

    outcome = revoke(connection)

    assert not outcome.done and outcome.status == ConnectionStatus.REVOKING
    assert "retried automatically" in outcome.message
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.REVOKING
    assert secrets_of(stored)["refresh_token"] == "rt-old"  # still encrypted, not wiped
    pending.refresh_from_db()
    assert pending.status == OutboxStatus.PENDING

    mocked_http.replace("POST", REVOKE_URL, body="")
    assert tasks.retry_revocations() == {"revoked": 1, "still_revoking": 0, "waiting": 0}
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.REVOKED
    pending.refresh_from_db()
    assert pending.status == OutboxStatus.CANCELLED


def test_a_rate_limited_revocation_waits_for_the_time_datadog_asked(mocked_http):
    mocked_http.post(REVOKE_URL, status=429, headers={"Retry-After": "120"})
    connection = make_connection()
    before = timezone.now()

    assert not revoke(connection).done

    stored = Connection.objects.get(pk=connection.pk)
    assert stored.paused_until is not None
    assert timedelta(seconds=119) < stored.paused_until - before <= timedelta(seconds=121)
    mocked_http.replace("POST", REVOKE_URL, body="")
    assert retry_pending_revocations() == {"revoked": 0, "still_revoking": 0, "waiting": 1}
    assert len(mocked_http.calls) == 1  # nothing sent before the pause ends

    Connection.objects.filter(pk=connection.pk).update(paused_until=before)
    assert retry_pending_revocations() == {"revoked": 1, "still_revoking": 0, "waiting": 0}
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.REVOKED


def test_a_token_datadog_already_revoked_is_not_sent_again_on_retry(mocked_http):
    mocked_http.post(REVOKE_URL, body="")
    mocked_http.post(REVOKE_URL, status=502)
    connection = make_connection()
    assert not revoke(connection).done
    assert secrets_of(connection)["refresh_token"] is None  # confirmed, so forgotten
    assert secrets_of(connection)["access_token"] == "at-old"

    mocked_http.replace("POST", REVOKE_URL, body="")
    retry_pending_revocations()
    assert [form(c.request)["token_type_hint"] for c in mocked_http.calls] == [
        "refresh_token",
        "access_token",
        "access_token",
    ]
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.REVOKED


def test_revoke_sends_the_bearer_token_as_datadogs_example_while_it_is_valid(mocked_http):
    mocked_http.post(REVOKE_URL, body="")
    revoke(make_connection())
    revoke(make_connection(expires_in=-60))  # an expired token is not sent
    headers = [c.request.headers.get("Authorization") for c in mocked_http.calls]
    assert headers == ["Bearer at-old", "Bearer at-old", None, None]


def test_a_revoke_401_alone_raises_no_alarm_when_the_token_endpoint_accepts_us(mocked_http):
    """The 401 was about the Bearer token, not our secret: the fresh tokens are revoked."""
    mocked_http.post(REVOKE_URL, status=401, json={"errors": ["Unauthorized"]})
    mocked_http.post(REVOKE_URL, body="")
    mocked_http.post(TOKEN_URL, json=token_json())
    connection = make_connection(expires_in=-60)

    outcome = revoke(connection)

    assert outcome.done
    assert not Alarm.objects.exists()
    revokes = [c.request for c in mocked_http.calls if c.request.url == REVOKE_URL]
    assert [(form(r)["token"], r.headers.get("Authorization")) for r in revokes] == [
        ("rt-old", None),
        ("rt-new", "Bearer at-new"),
        ("at-new", "Bearer at-new"),
    ]


def test_a_revoke_401_with_the_token_endpoint_refusing_too_raises_the_alarm(mocked_http):
    mocked_http.post(REVOKE_URL, status=401, body=oauth_error("invalid_client"))
    mocked_http.post(TOKEN_URL, status=401, body=oauth_error("invalid_client"))
    connection = make_connection()
    outcome = revoke(connection)
    assert outcome.status == ConnectionStatus.REVOKING
    assert "client credentials" in outcome.message
    assert Alarm.objects.get(code="invalid_client").cleared_at is None
    assert secrets_of(connection)["refresh_token"] == "rt-old"


def test_a_revoke_401_for_a_grant_already_gone_finishes_the_disconnect(mocked_http):
    mocked_http.post(REVOKE_URL, status=401, json={"errors": ["Unauthorized"]})
    mocked_http.post(TOKEN_URL, status=400, body=oauth_error("invalid_grant"))
    connection = make_connection()
    assert revoke(connection).done
    assert not Alarm.objects.exists()
    assert len([c for c in mocked_http.calls if c.request.url == REVOKE_URL]) == 1


def test_a_refused_access_token_of_a_revoked_grant_counts_as_revoked(mocked_http):
    mocked_http.post(REVOKE_URL, body="")
    mocked_http.post(REVOKE_URL, status=401, json={"errors": ["Unauthorized"]})
    connection = make_connection()
    assert revoke(connection).done
    assert not Alarm.objects.exists()
    assert [c.request.url for c in mocked_http.calls] == [REVOKE_URL, REVOKE_URL]


def test_a_revoke_refused_twice_with_a_working_client_is_retried_without_alarm(mocked_http):
    mocked_http.post(REVOKE_URL, status=401, json={"errors": ["Unauthorized"]})
    mocked_http.post(TOKEN_URL, json=token_json())
    connection = make_connection()
    outcome = revoke(connection)
    assert outcome.status == ConnectionStatus.REVOKING
    assert not Alarm.objects.exists()
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.last_error_code == "revoke_refused"
    assert secrets_of(stored)["refresh_token"] == "rt-new"  # still held, to revoke later


def test_a_400_is_surfaced_logged_and_retried(mocked_http, caplog):
    mocked_http.post(REVOKE_URL, status=400, body=oauth_error("invalid_request", "Missing token"))
    connection = make_connection()
    outcome = revoke(connection)
    assert outcome.status == ConnectionStatus.REVOKING
    assert "Datadog said: “Missing token”" in outcome.message
    assert "HTTP 400" not in outcome.message and "api.datadoghq.com" not in outcome.message
    assert "HTTP 400 from api.datadoghq.com/oauth2/v1/revoke" in caplog.text
    assert "Revoking Datadog connection" in caplog.text
    assert Connection.objects.get(pk=connection.pk).last_error_code == "invalid_request"


def test_unreadable_tokens_keep_revoking_without_contacting_datadog(mocked_http, partner_settings):
    connection = make_connection()
    with partner_settings(ENCRYPTION_KEYS=["0MDLmGX3rQnpZ4RvL7NTgGd0yZQ1uX6LJ4cT5V8nU2E="]):
        outcome = revoke(connection)
    assert outcome.status == ConnectionStatus.REVOKING
    assert "ENCRYPTION_KEYS" in outcome.message
    assert len(mocked_http.calls) == 0
    # Once the keys are right again, the retry completes the revocation.
    mocked_http.post(REVOKE_URL, body="")
    retry_pending_revocations()
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.REVOKED


def test_operator_override_forgets_unreadable_tokens_without_datadog(
    mocked_http, caplog, partner_settings
):
    connection = make_connection()
    with partner_settings(ENCRYPTION_KEYS=["0MDLmGX3rQnpZ4RvL7NTgGd0yZQ1uX6LJ4cT5V8nU2E="]):
        assert revoke(connection).status == ConnectionStatus.REVOKING
        outcome = revoke(connection, reason="Keys lost.", local_only=True)
    assert outcome.done
    assert "OAuth Apps" in outcome.message
    assert len(mocked_http.calls) == 0
    row = Connection.objects.get(pk=connection.pk)
    assert (row.access_token, row.refresh_token, row.api_key) == (None, None, None)
    assert "operator override" in row.status_reason
    assert "forgotten locally" in caplog.text


def test_local_only_revoke_from_the_command(mocked_http):
    from django.core.management import call_command

    connection = make_connection()
    call_command("datadog_partner_revoke", str(connection.pk), "--local-only")
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.REVOKED
    assert len(mocked_http.calls) == 0


def test_connection_without_tokens_is_revoked_locally(mocked_http):
    connection = make_connection(access_token=None, refresh_token=None)
    assert revoke(connection).done
    assert len(mocked_http.calls) == 0


def test_no_secret_reaches_logs_outcome_or_task_result(
    mocked_http, debug_logs, canaries, partner_settings
):
    mocked_http.post(REVOKE_URL, status=503)
    connection = make_connection(
        access_token=canaries["access_token"],
        refresh_token=canaries["refresh_token"],
        api_key=canaries["api_key"],
    )
    with partner_settings(CLIENT_SECRET=canaries["client_secret"]):
        outcome = revoke(connection)
        result = tasks.retry_revocations()
    canaries.assert_absent(debug_logs.text, "logs")
    canaries.assert_absent(outcome.message + repr(outcome) + repr(result), "the outcome")


def test_revoking_through_a_stale_copy_changes_nothing(
    mocked_http, status_changes, django_capture_on_commit_callbacks
):
    mocked_http.post(REVOKE_URL, body="")
    connection = make_connection()
    stale = Connection.objects.get(pk=connection.pk)
    revoke(connection)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = revoke(stale)  # still says "active" in memory
    assert outcome.done and "already disconnected" in outcome.message
    assert status_changes == [] and len(mocked_http.calls) == 2


def test_invalid_grant_after_a_lost_probe_answer_does_not_count_as_revoked(mocked_http):
    """The probe's refresh may have rotated the token at Datadog although its answer was
    lost: a later invalid_grant then proves nothing, and the disconnect stays pending."""
    mocked_http.post(REVOKE_URL, status=401, json={"errors": ["Unauthorized"]})
    mocked_http.post(TOKEN_URL, body=requests.ReadTimeout("answer lost"))
    connection = make_connection()
    assert not revoke(connection).done
    assert Connection.objects.get(pk=connection.pk).refresh_answer_lost_at is not None

    mocked_http.replace("POST", TOKEN_URL, status=400, body=oauth_error("invalid_grant"))
    retry_pending_revocations()
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.REVOKING
    assert stored.last_error_code == "invalid_grant"
    assert not Alarm.objects.exists()


def test_the_docs_receiver_revokes_a_deleted_owners_connections(datadog: Any) -> None:
    """The security page's snippet, run as written: deleting the owner revokes its
    connections at once, so an owner that reuses the key inherits none."""
    from django.db.models.signals import pre_delete

    from tests.testapp.models import Organization

    page = (Path(__file__).parent.parent / "docs/explanation/security.rst").read_text()
    block = page.split("**Deleting an owner.**")[1].split(".. code-block:: python\n")[1]
    lines = itertools.takewhile(lambda line: not line or line.startswith("    "), block.split("\n"))
    source = textwrap.dedent("\n".join(lines))
    namespace: dict[str, Any] = {"Organization": Organization}
    exec(compile(source, "security.rst", "exec"), namespace)
    receiver = namespace["revoke_its_datadog_connections"]
    try:
        owner = Organization.objects.create(name="Gone Ltd")
        connection = make_connection(owner)
        owner.delete()
        connection.refresh_from_db()
        assert connection.status == ConnectionStatus.REVOKED
        assert connection.access_token is None and connection.api_key is None
    finally:
        pre_delete.disconnect(receiver, sender=Organization)
