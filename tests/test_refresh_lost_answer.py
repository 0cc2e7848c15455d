"""A refresh whose answer is lost: Datadog may have rotated the refresh token meanwhile.

Datadog does not document whether a refresh rotates the refresh token (the sandbox can do
either). When the answer to a refresh never arrives, the token we still hold may be dead
already, so the ``invalid_grant`` that follows is not proof of an uninstall: the
connection keeps delivering with its API key, and an alarm and its status reason say that
API access needs a reconnect. Without a lost answer, ``invalid_grant`` still ends it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
import urllib3
from django.db import transaction
from django.utils import timezone

from django_datadog_partner import testing
from django_datadog_partner.connections import check_health, refresh
from django_datadog_partner.connections.tokens import lost_answer_alarm
from django_datadog_partner.delivery import drain
from django_datadog_partner.exceptions import (
    NeedsReconnectError,
    OAuthError,
    RateLimitedError,
    RefreshTokenLostError,
    RetryableError,
)
from django_datadog_partner.models import Alarm, Connection, ConnectionStatus
from django_datadog_partner.testing import FakeDatadog, make_connection
from django_datadog_partner.tracking import send_event
from tests.connect_support import CONNECTED, api, callback, fake_datadog, make_user, signed_in
from tests.connect_support import start as start_flow
from tests.lifecycle_support import TOKEN_URL, oauth_error, token_json
from tests.testapp.models import Organization

pytestmark = pytest.mark.django_db


@pytest.fixture
def lose_next_token_answer(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Arm: the fake handles the next token request, then its answer never arrives."""
    real_handle = testing.handle
    armed: list[bool] = []

    def handle(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        answer = real_handle(method, path, *args, **kwargs)
        if path == "/oauth2/v1/token" and armed:
            armed.pop()
            raise requests.ReadTimeout("the answer was lost on its way back")
        return answer

    monkeypatch.setattr(testing, "handle", handle)
    return lambda: armed.append(True)


def reloaded(connection: Connection) -> Connection:
    return Connection.objects.get(pk=connection.pk)


def test_a_lost_answer_after_rotation_keeps_delivery_and_raises_the_alarm(
    fake: FakeDatadog, acme: Organization, lose_next_token_answer: Callable[[], None]
) -> None:
    connection = fake.connection(owner=acme)
    lose_next_token_answer()
    with pytest.raises(RetryableError):
        refresh(connection, force=True)
    assert reloaded(connection).refresh_answer_lost_at is not None
    assert reloaded(connection).status == ConnectionStatus.ACTIVE

    # Datadog rotated the token while the answer was lost: the one we hold is refused.
    with pytest.raises(RefreshTokenLostError) as raised:
        refresh(connection, force=True)
    assert isinstance(raised.value, NeedsReconnectError)  # callers: API access needs a flow
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.ACTIVE  # not ended: delivery goes on
    assert "Reconnect" in stored.status_reason
    assert stored.last_error_code == "refresh_token_lost"
    alarm = Alarm.objects.get(code=lost_answer_alarm(connection))
    assert alarm.cleared_at is None
    assert f"connection {connection.pk}" in alarm.message

    # Telemetry uses the API key, which Datadog still accepts.
    with transaction.atomic():
        send_event(connection, title="Order 1 paid", text="Paid in full")
    drain()
    assert [e["title"] for e in fake.events(connection)] == ["Order 1 paid"]

    # The usual rules go on: the daily check tries again, and says so again.
    report = check_health(connection)
    assert not report.healthy
    assert reloaded(connection).status == ConnectionStatus.ACTIVE
    assert Alarm.objects.get(code=lost_answer_alarm(connection)).count == 2


def test_a_lost_answer_without_rotation_is_recovered_by_the_next_refresh(
    fake: FakeDatadog, acme: Organization, lose_next_token_answer: Callable[[], None]
) -> None:
    connection = fake.connection(owner=acme)
    fake.set_faults(fake.org_of(connection), rotate_refresh_tokens=False)
    lose_next_token_answer()
    with pytest.raises(RetryableError):
        refresh(connection, force=True)
    assert reloaded(connection).refresh_answer_lost_at is not None

    assert refresh(connection, force=True)  # the token we hold still works
    assert reloaded(connection).refresh_answer_lost_at is None
    assert not Alarm.objects.exists()

    # With the mark gone, invalid_grant means what it always meant: uninstalled.
    fake.uninstall(fake.org_of(connection))
    with pytest.raises(NeedsReconnectError) as raised:
        refresh(connection, force=True)
    assert not isinstance(raised.value, RefreshTokenLostError)
    assert reloaded(connection).status == ConnectionStatus.NEEDS_RECONNECT


def test_invalid_grant_without_a_lost_answer_still_ends_the_grant(
    fake: FakeDatadog, acme: Organization
) -> None:
    connection = fake.connection(owner=acme)
    fake.uninstall(fake.org_of(connection))
    with pytest.raises(NeedsReconnectError):
        refresh(connection, force=True)
    assert reloaded(connection).status == ConnectionStatus.NEEDS_RECONNECT
    assert not Alarm.objects.exists()


RESET_AFTER_SENDING = requests.ConnectionError(
    urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
)


@pytest.mark.parametrize(
    ("answer", "error", "lost"),
    [
        ({"body": requests.ReadTimeout("no answer")}, RetryableError, True),
        ({"body": RESET_AFTER_SENDING}, RetryableError, True),
        ({"status": 200, "body": '{"access_token": "at-new", "refr'}, OAuthError, True),
        ({"body": requests.ConnectTimeout("never connected")}, RetryableError, False),
        ({"body": requests.ConnectionError("refused")}, RetryableError, False),
        ({"status": 503}, RetryableError, False),
        ({"status": 429, "headers": {"Retry-After": "30"}}, RateLimitedError, False),
    ],
    ids=[
        "read timeout",
        "reset after sending",
        "2xx unreadable",
        "connect timeout",
        "refused",
        "503",
        "429",
    ],
)
def test_only_answers_that_may_have_been_processed_are_recorded_as_lost(
    mocked_http: responses.RequestsMock, answer: dict[str, Any], error: type, lost: bool
) -> None:
    mocked_http.post(TOKEN_URL, **answer)
    connection = make_connection(expires_in=-10)
    with pytest.raises(error):
        refresh(connection)
    assert (reloaded(connection).refresh_answer_lost_at is not None) is lost
    assert (connection.refresh_answer_lost_at is not None) is lost
    assert reloaded(connection).status == ConnectionStatus.ACTIVE


def test_a_reconnect_clears_the_mark_and_the_alarm(
    django_user_model: Any, mocked_http: responses.RequestsMock
) -> None:
    client = signed_in(make_user(django_user_model, "alice"))
    fake_datadog(mocked_http)
    callback(client, start_flow(client).state)
    connection = Connection.objects.get()
    # An earlier refresh answer was lost, and Datadog now refuses the token we hold.
    Connection.objects.filter(pk=connection.pk).update(refresh_answer_lost_at=timezone.now())
    mocked_http.replace(responses.POST, TOKEN_URL, status=400, body=oauth_error("invalid_grant"))
    with pytest.raises(RefreshTokenLostError):
        refresh(connection, force=True)
    assert Alarm.objects.get(code=lost_answer_alarm(connection)).cleared_at is None

    response = client.post(f"/datadog/connections/{connection.pk}/reconnect/")
    state = dict(parse_qsl(urlsplit(response["Location"]).query))["state"]
    mocked_http.replace(responses.POST, TOKEN_URL, json=token_json(access="at-2", refresh="rt-2"))
    # The same organisation: Datadog holds its key (409) and the stored one still works.
    mocked_http.replace(responses.POST, api("datadoghq.com", "/api/v2/api_keys/marketplace"),
                        status=409, json={"errors": ["exists"]})  # fmt: skip
    mocked_http.get(api("datadoghq.com", "/api/v1/validate"), json={"valid": True})
    assert callback(client, state)["Location"] == CONNECTED
    assert Connection.objects.get().pk == connection.pk
    stored = reloaded(connection)
    assert stored.refresh_answer_lost_at is None
    assert Alarm.objects.get(code=lost_answer_alarm(connection)).cleared_at is not None
