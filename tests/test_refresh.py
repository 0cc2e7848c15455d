"""Token refresh: leeway, single flight, RFC 6749 §6, invalid_grant races, invalid_client."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connection as db_connection
from django.utils import timezone

from django_datadog_partner.connections import access_token, refresh
from django_datadog_partner.connections.tokens import INVALID_CLIENT_ALARM, REFRESH_LEEWAY
from django_datadog_partner.exceptions import (
    ConfigurationError,
    CredentialsUnreadableError,
    InvalidClientError,
    NeedsReconnectError,
    OAuthError,
    RateLimitedError,
    RetryableError,
)
from django_datadog_partner.models import Alarm, Connection, ConnectionStatus
from django_datadog_partner.signals import configuration_alarm
from django_datadog_partner.testing import make_connection
from tests.lifecycle_support import (
    TOKEN_URL,
    all_rows,
    form,
    oauth_error,
    secrets_of,
    token_json,
)

pytestmark = pytest.mark.django_db


def test_fresh_token_is_used_without_any_request(mocked_http):
    connection = make_connection(expires_in=3600)
    assert access_token(connection) == "at-old"
    assert refresh(connection) is False
    assert len(mocked_http.calls) == 0


@pytest.mark.parametrize(
    ("expires_in", "refreshes"),
    [
        (-60, True),
        (0, True),
        (REFRESH_LEEWAY.seconds - 30, True),
        (REFRESH_LEEWAY.seconds + 60, False),
    ],
)
def test_refresh_happens_within_the_five_minute_leeway(mocked_http, expires_in, refreshes):
    mocked_http.post(TOKEN_URL, json=token_json())
    connection = make_connection(expires_in=expires_in)
    assert access_token(connection) == ("at-new" if refreshes else "at-old")
    assert len(mocked_http.calls) == int(refreshes)


def test_expired_token_is_refreshed_with_client_credentials_and_stored(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json(scope="api_keys_write events_read"))
    connection = make_connection(expires_in=-10)

    assert access_token(connection) == "at-new"

    sent = form(mocked_http.calls[0].request)
    assert sent == {
        "grant_type": "refresh_token",
        "refresh_token": "rt-old",
        "client_id": "test-client-id",
        "client_secret": "test-client-secret",
    }
    stored = Connection.objects.get(pk=connection.pk)
    assert secrets_of(stored) | {"api_key": None} == {
        "access_token": "at-new",
        "refresh_token": "rt-new",
        "api_key": None,
    }
    assert stored.expires_at is not None
    assert stored.expires_at > timezone.now() + timedelta(minutes=59)
    assert stored.scopes == ["api_keys_write", "events_read"]
    assert stored.last_success_at is not None
    assert stored.status == ConnectionStatus.ACTIVE


def test_answer_without_refresh_token_keeps_the_stored_one(mocked_http):
    """RFC 6749 §6 (AT-29): no refresh_token in the answer -> the old one stays valid."""
    mocked_http.post(TOKEN_URL, json=token_json(access="at-2", refresh=None))
    connection = make_connection(expires_in=-10)
    refresh(connection)
    assert secrets_of(connection)["refresh_token"] == "rt-old"
    assert secrets_of(connection)["access_token"] == "at-2"


def test_rotated_refresh_token_replaces_the_old_one_and_is_used_next_time(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json(access="at-2", refresh="rt-2"))
    connection = make_connection(expires_in=-10)
    refresh(connection)
    mocked_http.replace("POST", TOKEN_URL, json=token_json(access="at-3", refresh="rt-3"))
    refresh(connection, force=True)
    assert form(mocked_http.calls[1].request)["refresh_token"] == "rt-2"
    assert secrets_of(connection)["refresh_token"] == "rt-3"


def test_new_tokens_are_committed_before_the_access_token_is_handed_out(mocked_http):
    """The row holds the new refresh token by the time the caller gets the access token."""
    mocked_http.post(TOKEN_URL, json=token_json())
    connection = make_connection(expires_in=-10)
    token = access_token(connection)
    raw = Connection.objects.filter(pk=connection.pk).values_list("refresh_token", flat=True)[0]
    assert token == "at-new"
    assert raw is not None and raw.reveal() == "rt-new"


# --- invalid_grant: a race or a revoked grant ----------------------------------------------


def test_invalid_grant_with_unchanged_token_marks_needs_reconnect_and_stops_calling(mocked_http):
    mocked_http.post(TOKEN_URL, status=400, body=oauth_error("invalid_grant", "Invalid grant"))
    connection = make_connection(expires_in=-10)

    with pytest.raises(NeedsReconnectError):
        access_token(connection)

    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.NEEDS_RECONNECT
    # The reason is the customer's to read: no protocol codes; the error code keeps it.
    assert "uninstalled" in stored.status_reason and "invalid_grant" not in stored.status_reason
    assert stored.last_error_code == "invalid_grant"
    assert not Alarm.objects.exists()
    # No further token calls, whatever the caller tries.
    for attempt in (lambda: access_token(stored), lambda: refresh(stored, force=True)):
        with pytest.raises(NeedsReconnectError):
            attempt()
    assert len(mocked_http.calls) == 1


def test_invalid_grant_after_another_worker_rotated_the_token_uses_the_new_token(mocked_http):
    """The losing worker's refresh token was spent by the winner: a race, not a revocation."""
    connection = make_connection(expires_in=-10)

    def winner_stores_then_loser_is_refused(request):
        winner = Connection.objects.get(pk=connection.pk)
        winner.access_token, winner.refresh_token = "at-winner", "rt-winner"
        winner.expires_at = timezone.now() + timedelta(hours=1)
        winner.save()
        return (400, {}, oauth_error("invalid_grant"))

    mocked_http.add_callback("POST", TOKEN_URL, callback=winner_stores_then_loser_is_refused)

    assert access_token(connection) == "at-winner"
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.ACTIVE
    assert secrets_of(stored)["refresh_token"] == "rt-winner"
    assert len(mocked_http.calls) == 1


def test_invalid_grant_after_a_concurrent_revocation_does_not_mark_needs_reconnect(mocked_http):
    connection = make_connection(expires_in=-10)

    def revoked_meanwhile(request):
        Connection.objects.filter(pk=connection.pk).update(
            status=ConnectionStatus.REVOKED, refresh_token=None, access_token=None
        )
        return (400, {}, oauth_error("invalid_grant"))

    mocked_http.add_callback("POST", TOKEN_URL, callback=revoked_meanwhile)
    with pytest.raises(NeedsReconnectError):
        access_token(connection)
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.REVOKED


# --- invalid_client: our configuration, never the customer's grant --------------------------


def test_invalid_client_raises_an_alarm_and_leaves_every_connection_untouched(mocked_http):
    alarms = []
    configuration_alarm.connect(receiver := lambda **kw: alarms.append(kw["code"]), weak=False)
    mocked_http.post(TOKEN_URL, status=401, body=oauth_error("invalid_client", "Bad secret"))
    connection = make_connection(expires_in=-10)
    other = make_connection(expires_in=-10)
    before = all_rows()

    try:
        with pytest.raises(InvalidClientError) as raised:
            access_token(connection)
    finally:
        configuration_alarm.disconnect(receiver)

    assert isinstance(raised.value, ConfigurationError)
    assert all_rows() == before
    assert Connection.objects.get(pk=other.pk).status == ConnectionStatus.ACTIVE
    alarm = Alarm.objects.get(code=INVALID_CLIENT_ALARM)
    assert alarm.cleared_at is None
    assert "CLIENT_SECRET" in alarm.message
    assert alarms == [INVALID_CLIENT_ALARM]


def test_after_the_client_secret_is_fixed_the_same_connection_refreshes_and_the_alarm_clears(
    mocked_http,
    partner_settings,
):
    mocked_http.post(TOKEN_URL, status=401, body=oauth_error("invalid_client"))
    connection = make_connection(expires_in=-10)
    with pytest.raises(InvalidClientError):
        refresh(connection)

    mocked_http.replace("POST", TOKEN_URL, json=token_json())
    with partner_settings(CLIENT_SECRET="rotated-secret"):
        assert access_token(connection) == "at-new"
    assert form(mocked_http.calls[1].request)["client_secret"] == "rotated-secret"
    assert Alarm.objects.get(code=INVALID_CLIENT_ALARM).cleared_at is not None
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.ACTIVE


def test_client_secret_can_be_a_callable_read_on_every_refresh(mocked_http, partner_settings):
    mocked_http.post(TOKEN_URL, json=token_json())
    secrets = iter(["from-vault-1", "from-vault-2"])
    with partner_settings(CLIENT_SECRET=lambda: next(secrets)):
        connection = make_connection(expires_in=-10)
        refresh(connection)
        refresh(connection, force=True)
    assert [form(c.request)["client_secret"] for c in mocked_http.calls] == [
        "from-vault-1",
        "from-vault-2",
    ]


# --- transient failures never break a connection -----------------------------------------


@pytest.mark.parametrize(
    ("response", "error", "code"),
    [
        ({"status": 503}, RetryableError, "http_503"),
        ({"status": 500, "body": "oops"}, RetryableError, "http_500"),
        ({"status": 429, "headers": {"Retry-After": "30"}}, RateLimitedError, "rate_limited"),
        ({"body": requests.ConnectTimeout("slow")}, RetryableError, "unreachable"),
        (
            {"status": 400, "body": oauth_error("invalid_request", "x")},
            OAuthError,
            "invalid_request",
        ),
    ],
)
def test_transient_and_unknown_failures_keep_status_and_tokens(mocked_http, response, error, code):
    mocked_http.post(TOKEN_URL, **response)
    connection = make_connection(expires_in=-10)
    with pytest.raises(error):
        access_token(connection)
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.ACTIVE
    assert stored.last_error_code == code
    assert secrets_of(stored)["refresh_token"] == "rt-old"
    assert not Alarm.objects.exists()


def test_forced_refresh_is_skipped_when_another_worker_already_replaced_the_token(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    stale = make_connection(expires_in=3600)
    other = Connection.objects.get(pk=stale.pk)
    other.access_token = "at-by-other-worker"
    other.save()

    assert refresh(stale, force=True) is True
    assert len(mocked_http.calls) == 0
    assert stale.access_token is not None and stale.access_token.reveal() == "at-by-other-worker"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (ConnectionStatus.NEEDS_RECONNECT, NeedsReconnectError),
        (ConnectionStatus.REVOKING, NeedsReconnectError),
        (ConnectionStatus.REVOKED, NeedsReconnectError),
        (ConnectionStatus.CREDENTIALS_UNREADABLE, CredentialsUnreadableError),
    ],
)
def test_connections_that_cannot_be_used_make_no_token_request(mocked_http, status, error):
    connection = make_connection(expires_in=-10, status=status)
    with pytest.raises(error):
        access_token(connection)
    with pytest.raises(error):
        refresh(connection, force=True)
    assert len(mocked_http.calls) == 0


def test_undecryptable_refresh_token_marks_the_connection_and_sends_nothing(
    mocked_http, partner_settings
):
    connection = make_connection(expires_in=-10)
    other_key = "0MDLmGX3rQnpZ4RvL7NTgGd0yZQ1uX6LJ4cT5V8nU2E="
    with partner_settings(ENCRYPTION_KEYS=[other_key]), pytest.raises(CredentialsUnreadableError):
        access_token(connection)
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.CREDENTIALS_UNREADABLE
    assert len(mocked_http.calls) == 0


def test_no_secret_reaches_logs_or_exceptions(mocked_http, debug_logs, canaries, partner_settings):
    connection = make_connection(
        expires_in=-10,
        refresh_token=canaries["refresh_token"],
        access_token=canaries["access_token"],
    )
    mocked_http.post(TOKEN_URL, status=400, body=oauth_error("invalid_grant"))
    with (
        partner_settings(CLIENT_SECRET=canaries["client_secret"]),
        pytest.raises(NeedsReconnectError) as raised,
    ):
        access_token(connection)
    canaries.assert_absent(debug_logs.text, "logs")
    canaries.assert_absent(str(raised.value) + repr(raised.value), "the exception")
    canaries.assert_absent(repr(connection) + str(connection), "repr")


# --- AT-28: single flight on PostgreSQL -----------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_threads_on_one_expired_connection_cause_exactly_one_token_request(mocked_http):
    if db_connection.vendor != "postgresql":
        pytest.skip("SQLite has no row locks; run with DATABASE_URL=postgres://… (AT-28)")
    from django.db import connections

    from django_datadog_partner.api import api_for

    connection = make_connection(expires_in=-10)

    def slow_token_endpoint(request):
        time.sleep(0.3)  # keep the first refresh in flight while the others queue on the lock
        return (200, {}, _json(token_json(access="at-single", refresh="rt-single")))

    mocked_http.add_callback("POST", TOKEN_URL, callback=slow_token_endpoint)
    mocked_http.get("https://api.datadoghq.com/api/v2/users", json={"data": []})
    start = threading.Barrier(20)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            mine = Connection.objects.get(pk=connection.pk)
            start.wait()
            api_for(mine).get("/api/v2/users")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    token_calls = [c for c in mocked_http.calls if c.request.url == TOKEN_URL]
    api_calls = [c for c in mocked_http.calls if c.request.url.endswith("/api/v2/users")]
    assert len(token_calls) == 1
    assert len(api_calls) == 20
    assert {c.request.headers["Authorization"] for c in api_calls} == {"Bearer at-single"}
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.ACTIVE
    assert secrets_of(stored)["refresh_token"] == "rt-single"


def _json(body: dict) -> str:
    import json

    return json.dumps(body)


@pytest.mark.django_db(transaction=True)
def test_no_transaction_or_row_lock_is_held_while_datadog_answers(mocked_http):
    """The row is read and locked briefly before the token request and again to store the
    answer; while Datadog answers, another writer of the row does not wait."""
    connection = make_connection(expires_in=-10)
    during: list[tuple[bool, int]] = []

    def endpoint(request):
        # Another writer of the row (here: a plain UPDATE on this autocommit connection).
        updated = Connection.objects.filter(pk=connection.pk).update(last_error_code="x")
        during.append((db_connection.in_atomic_block, updated))
        return (200, {}, _json(token_json(access="at-2", refresh="rt-2")))

    mocked_http.add_callback("POST", TOKEN_URL, callback=endpoint)
    assert refresh(connection) is True
    assert during == [(False, 1)]
    assert secrets_of(Connection.objects.get(pk=connection.pk))["refresh_token"] == "rt-2"


@pytest.mark.django_db(transaction=True)
def test_a_revocation_during_the_token_request_wins_over_the_answer(mocked_http):
    connection = make_connection(expires_in=-10)

    def endpoint(request):
        Connection.objects.filter(pk=connection.pk).update(status=ConnectionStatus.REVOKED)
        return (200, {}, _json(token_json(access="at-2", refresh="rt-2")))

    mocked_http.add_callback("POST", TOKEN_URL, callback=endpoint)
    with pytest.raises(NeedsReconnectError):
        refresh(connection)
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.status == ConnectionStatus.REVOKED
    assert secrets_of(stored)["refresh_token"] != "rt-2"
