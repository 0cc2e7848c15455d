"""Every lifecycle status transition records reason and time and sends
``connection_status_changed(connection, old, new, reason)`` once, after commit."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from django_datadog_partner.connections import (
    access_token,
    check_health,
    refresh,
    retry_pending_revocations,
    revoke,
)
from django_datadog_partner.exceptions import DatadogPartnerError
from django_datadog_partner.models import Connection, ConnectionStatus
from django_datadog_partner.testing import make_connection
from tests.lifecycle_support import (
    REVOKE_URL,
    TOKEN_URL,
    VALIDATE_URL,
    oauth_error,
    token_json,
)
from tests.testapp.models import Workspace

pytestmark = pytest.mark.django_db

A = ConnectionStatus
OTHER_KEY = "0MDLmGX3rQnpZ4RvL7NTgGd0yZQ1uX6LJ4cT5V8nU2E="


def swallow(operation: Callable[[], object]) -> None:
    # The transition is what is tested here, not the exception.
    with contextlib.suppress(DatadogPartnerError):
        operation()


def uninstalled(http, c: Connection, partner_settings) -> None:
    http.post(TOKEN_URL, status=400, body=oauth_error("invalid_grant"))
    swallow(lambda: refresh(c, force=True))


def refresh_token_missing(http, c: Connection, partner_settings) -> None:
    Connection.objects.filter(pk=c.pk).update(refresh_token=None)
    c.refresh_from_db()
    swallow(lambda: refresh(c, force=True))


def key_revoked_in_datadog(http, c: Connection, partner_settings) -> None:
    http.post(TOKEN_URL, json=token_json())
    http.get(VALIDATE_URL, status=403, json={"errors": ["Forbidden"]})
    check_health(c)


def key_accepted_again(http, c: Connection, partner_settings) -> None:
    http.post(TOKEN_URL, json=token_json())
    http.get(VALIDATE_URL, json={"valid": True})
    check_health(c)


def key_not_stored(http, c: Connection, partner_settings) -> None:
    http.post(TOKEN_URL, json=token_json())
    Connection.objects.filter(pk=c.pk).update(api_key=None)
    c.refresh_from_db()
    check_health(c)


def keys_lost(http, c: Connection, partner_settings) -> None:
    with partner_settings(ENCRYPTION_KEYS=[OTHER_KEY]):
        swallow(lambda: refresh(c, force=True))


def keys_restored(http, c: Connection, partner_settings) -> None:
    http.post(TOKEN_URL, json=token_json())
    http.get(VALIDATE_URL, json={"valid": True})
    check_health(c)


def revoked(http, c: Connection, partner_settings) -> None:
    http.post(REVOKE_URL, body="")
    revoke(c)


def revoke_during_outage_then_retry(http, c: Connection, partner_settings) -> None:
    http.post(REVOKE_URL, status=503)
    revoke(c)
    http.replace("POST", REVOKE_URL, body="")
    retry_pending_revocations()


def owner_deleted(http, c: Connection, partner_settings) -> None:
    http.post(REVOKE_URL, body="")
    Workspace.objects.filter(pk=c.owner_object_id).delete()
    check_health(c)


@pytest.mark.parametrize(
    ("start", "scenario", "expected"),
    [
        (A.ACTIVE, uninstalled, [(A.ACTIVE, A.NEEDS_RECONNECT)]),
        (A.ACTIVE, refresh_token_missing, [(A.ACTIVE, A.NEEDS_RECONNECT)]),
        (A.ACTIVE, key_revoked_in_datadog, [(A.ACTIVE, A.API_KEY_REJECTED)]),
        (A.API_KEY_REJECTED, key_accepted_again, [(A.API_KEY_REJECTED, A.ACTIVE)]),
        (A.ACTIVE, key_not_stored, [(A.ACTIVE, A.KEY_MISSING)]),
        (A.ACTIVE, keys_lost, [(A.ACTIVE, A.CREDENTIALS_UNREADABLE)]),
        (A.CREDENTIALS_UNREADABLE, keys_restored, [(A.CREDENTIALS_UNREADABLE, A.ACTIVE)]),
        (A.ACTIVE, revoked, [(A.ACTIVE, A.REVOKING), (A.REVOKING, A.REVOKED)]),
        (
            A.ACTIVE,
            revoke_during_outage_then_retry,
            [(A.ACTIVE, A.REVOKING), (A.REVOKING, A.REVOKED)],
        ),
        (
            A.NEEDS_RECONNECT,
            owner_deleted,
            [(A.NEEDS_RECONNECT, A.REVOKING), (A.REVOKING, A.REVOKED)],
        ),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_transition_records_reason_and_time_and_signals_once(
    mocked_http,
    status_changes,
    django_capture_on_commit_callbacks,
    partner_settings,
    start,
    scenario,
    expected,
):
    connection = make_connection(Workspace.objects.create(name="w"), status=start)
    long_ago = timezone.now() - timedelta(days=3)
    Connection.objects.filter(pk=connection.pk).update(status_changed_at=long_ago)
    connection.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        scenario(mocked_http, connection, partner_settings)

    assert [(old, new) for _pk, old, new, _reason in status_changes] == expected
    assert all(reason for *_rest, reason in status_changes)
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == expected[-1][1]
    assert stored.status_reason == status_changes[-1][3]
    assert stored.status_changed_at > long_ago


def test_an_operation_that_changes_nothing_sends_nothing(
    mocked_http, status_changes, django_capture_on_commit_callbacks
):
    mocked_http.post(TOKEN_URL, status=503)
    connection = make_connection(expires_in=-5)
    with django_capture_on_commit_callbacks(execute=True):
        swallow(lambda: access_token(connection))
    assert status_changes == []


def test_the_signal_waits_for_the_commit(
    mocked_http, status_changes, django_capture_on_commit_callbacks
):
    mocked_http.post(TOKEN_URL, status=400, body=oauth_error("invalid_grant"))
    connection = make_connection(expires_in=-5)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        swallow(lambda: access_token(connection))
    assert status_changes == []  # not sent while the transaction could still roll back
    for callback in callbacks:
        callback()
    assert [(old, new) for _pk, old, new, _r in status_changes] == [(A.ACTIVE, A.NEEDS_RECONNECT)]


def test_a_repaired_connection_resumes_its_parked_items(mocked_http):
    """Rows parked while Datadog refused the key go out again once the key validates."""
    from django_datadog_partner.models import OutboxEvent, OutboxKind, OutboxStatus

    connection = make_connection(status=A.API_KEY_REJECTED)
    other = make_connection(status=A.API_KEY_REJECTED)

    def parked(conn: Connection) -> OutboxEvent:
        return OutboxEvent.objects.create(
            kind=OutboxKind.EVENT,
            owner_content_type=conn.owner_content_type,
            owner_object_id=conn.owner_object_id,
            connection=conn,
            payload={"title": "t", "text": "x"},
            status=OutboxStatus.PARKED,
            attempts=3,
            last_error_code="api_key_rejected",
        )

    mine, theirs = parked(connection), parked(other)
    mocked_http.post(TOKEN_URL, json=token_json())
    mocked_http.get(VALIDATE_URL, json={"valid": True})
    check_health(connection)

    connection.refresh_from_db()
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert connection.status == A.ACTIVE
    assert (mine.status, mine.attempts, mine.last_error_code) == (OutboxStatus.PENDING, 0, "")
    assert mine.next_attempt_at <= timezone.now()
    assert theirs.status == OutboxStatus.PARKED  # another connection's rows stay put
