"""AT-40/AT-36/AT-42: canary secrets never leave their encrypted columns and request bodies.

Every logger is at DEBUG (``debug_logs``); the sweep covers captured logs, rendered pages
and redirects, exception text, session rows, django-q2 task rows, ``repr``/``str`` and
outbound URLs. Raw database columns are read with a cursor.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import responses
from django.contrib.sessions.models import Session
from django.db import connection as db
from django.test import Client
from django_q.models import OrmQ, Schedule, Task

from django_datadog_partner import connections
from django_datadog_partner.models import AuthorizationRequest, Connection
from tests.conftest import Canaries
from tests.connect_support import (
    CONNECTED,
    api,
    callback,
    key_json,
    make_user,
    signed_in,
    start,
    token_json,
)

pytestmark = pytest.mark.django_db

TOKEN = api("datadoghq.com", "/oauth2/v1/token")
MARKETPLACE = api("datadoghq.com", "/api/v2/api_keys/marketplace")


@pytest.fixture
def secret_settings(canaries: Canaries, partner_settings: Any) -> Any:
    with partner_settings(CLIENT_SECRET=canaries["client_secret"]):
        yield


@pytest.fixture
def client(django_user_model: Any) -> Client:
    return signed_in(make_user(django_user_model, "alice"))


class Sweep:
    """Collects everything a secret must never reach, then checks it all at once."""

    def __init__(self, canaries: Canaries) -> None:
        self.canaries = canaries
        self.texts: list[tuple[str, str]] = []

    def page(self, response: Any, where: str) -> Any:
        headers = "\n".join(f"{k}: {v}" for k, v in response.items())
        self.texts.append((where, headers + "\n" + response.content.decode(errors="replace")))
        return response

    def follow(self, client: Client, response: Any, where: str) -> None:
        self.page(response, where)
        if response.status_code in (301, 302, 303) and response["Location"].startswith("/"):
            self.page(client.get(response["Location"]), where + " (after redirect)")

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def check(self, logs: pytest.LogCaptureFixture, rsps: responses.RequestsMock) -> None:
        self.add("logs", logs.text)
        self.add("log records", "\n".join(repr(r.args) + str(r.msg) for r in logs.records))
        for session in Session.objects.all():
            self.add("session", session.session_data + str(session.get_decoded()))
        for model in (OrmQ, Task, Schedule):
            self.add(f"{model.__name__} rows", str(list(model.objects.values())))
        for connection in Connection.objects.all():
            self.add("connection repr", repr(connection) + str(connection))
            self.add("connection fields", str(vars(connection)))
        for pending in AuthorizationRequest.objects.all():
            self.add("authorization repr", repr(pending) + str(pending) + str(vars(pending)))
        self.add("outbound URLs", "\n".join(str(c.request.url) for c in rsps.calls))
        for where, text in self.texts:
            self.canaries.assert_absent(text, where)


def run_flow(
    client: Client, canaries: Canaries, sweep: Sweep, rsps: responses.RequestsMock
) -> None:
    sweep.page(
        client.get("/datadog/connect/?domain=datadoghq.com&site=app.datadoghq.com"), "confirm"
    )
    started = start(client)
    pending = started.row
    assert pending.code_verifier is not None
    canaries["verifier"] = pending.code_verifier.reveal()
    sweep.add("authorize URL", started.url)
    response = callback(client, started.state, code=canaries["code"])
    sweep.follow(client, response, "callback")


def test_canaries_stay_secret_through_a_successful_flow(
    client: Client,
    canaries: Canaries,
    secret_settings: None,
    mocked_http: responses.RequestsMock,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    sweep = Sweep(canaries)
    mocked_http.post(TOKEN, json=token_json(canaries["access_token"], canaries["refresh_token"]))
    mocked_http.post(MARKETPLACE, json=key_json(canaries["api_key"]), status=201)
    run_flow(client, canaries, sweep, mocked_http)
    connection = Connection.objects.get()
    assert connection.api_key is not None and connection.api_key.reveal() == canaries["api_key"]
    assert client.get(CONNECTED).status_code == 200
    sweep.page(client.get("/datadog/connections/"), "list")
    sweep.page(client.get(f"/datadog/connections/{connection.pk}/"), "detail")
    mocked_http.post(api("datadoghq.com", "/oauth2/v1/revoke"), status=200)
    sweep.follow(
        client, client.post(f"/datadog/connections/{connection.pk}/disconnect/"), "disconnect"
    )
    sweep.check(debug_logs, mocked_http)
    # The secrets did reach Datadog, in request bodies and headers only (AT-42).
    token_body = str(mocked_http.calls[0].request.body)
    assert canaries["client_secret"] in token_body and canaries["verifier"] in token_body
    assert canaries["code"] in token_body


@pytest.mark.parametrize(
    "token_answer",
    [
        {"status": 400, "json": {"errors": ["invalid_grant - Invalid authorization code"]}},
        {"status": 401, "json": {"errors": ["Unauthorized"]}},
        {"status": 307, "headers": {"Location": "https://evil.example/"}},
        {"status": 502, "body": "<html>bad gateway</html>"},
        {"status": 200, "json": {"refresh_token": "x", "token_type": "bearer"}},
    ],
)
def test_canaries_stay_secret_when_the_token_exchange_fails(
    client: Client,
    canaries: Canaries,
    secret_settings: None,
    mocked_http: responses.RequestsMock,
    debug_logs: pytest.LogCaptureFixture,
    token_answer: dict[str, Any],
) -> None:
    sweep = Sweep(canaries)
    mocked_http.post(TOKEN, **token_answer)
    run_flow(client, canaries, sweep, mocked_http)
    assert Connection.objects.count() == 0
    sweep.check(debug_logs, mocked_http)


@pytest.mark.parametrize(
    "marketplace_answer",
    [
        {"status": 409, "json": {"errors": ["exists"]}},
        {"status": 403, "json": {"errors": ["Forbidden"]}},
        {"status": 201, "json": {"data": {"attributes": {"key": "short"}}}},
    ],
)
def test_canaries_stay_secret_when_the_api_key_is_missing(
    client: Client,
    canaries: Canaries,
    secret_settings: None,
    mocked_http: responses.RequestsMock,
    debug_logs: pytest.LogCaptureFixture,
    marketplace_answer: dict[str, Any],
) -> None:
    sweep = Sweep(canaries)
    mocked_http.post(TOKEN, json=token_json(canaries["access_token"], canaries["refresh_token"]))
    mocked_http.post(MARKETPLACE, **marketplace_answer)
    run_flow(client, canaries, sweep, mocked_http)
    connection = Connection.objects.get()
    sweep.follow(client, client.post(f"/datadog/connections/{connection.pk}/api-key/"), "retry")
    sweep.check(debug_logs, mocked_http)


def test_exception_text_of_failed_connects_holds_no_secret(
    client: Client, canaries: Canaries, secret_settings: None, mocked_http: responses.RequestsMock
) -> None:
    started = start(client)
    mocked_http.post(TOKEN, status=400, json={"errors": ["invalid_grant - nope"]})
    with pytest.raises(connections.ConnectFailed) as info:
        connections.connect(
            client.session,
            user=started.row.user,
            state=started.state,
            code=canaries["code"],
        )
    text = str(info.value) + repr(info.value) + str(info.value.args) + info.value.detail
    canaries.assert_absent(text, "the exception")


def test_token_set_and_outcomes_have_redacted_reprs(
    client: Client, canaries: Canaries, secret_settings: None, mocked_http: responses.RequestsMock
) -> None:
    started = start(client)
    mocked_http.post(TOKEN, json=token_json(canaries["access_token"], canaries["refresh_token"]))
    mocked_http.post(MARKETPLACE, json=key_json(canaries["api_key"]), status=201)
    outcome = connections.connect(
        client.session, user=started.row.user, state=started.state, code=canaries["code"]
    )
    oauth = importlib.import_module("django_datadog_partner.oauth")
    tokens = oauth.TokenSet(
        access_token=canaries["access_token"],
        refresh_token=canaries["refresh_token"],
        expires_at=outcome.connection.created_at,
        scopes=[],
    )
    canaries.assert_absent(repr(outcome) + str(outcome) + repr(tokens) + str(tokens), "repr")


def test_raw_columns_hold_no_plaintext(
    client: Client, canaries: Canaries, secret_settings: None, mocked_http: responses.RequestsMock
) -> None:
    """AT-36: tokens, API key and PKCE verifier are ciphertext in the database."""
    started = start(client)
    verifier = started.row.code_verifier
    assert verifier is not None
    canaries["verifier"] = verifier.reveal()
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM datadog_partner_authorizationrequest")
        canaries.assert_absent(str(cursor.fetchall()), "authorization request columns")
    mocked_http.post(TOKEN, json=token_json(canaries["access_token"], canaries["refresh_token"]))
    mocked_http.post(MARKETPLACE, json=key_json(canaries["api_key"]), status=201)
    callback(client, started.state, code=canaries["code"])
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM datadog_partner_connection")
        rows = cursor.fetchall()
        cursor.execute(
            "SELECT access_token, refresh_token, api_key FROM datadog_partner_connection"
        )
        ciphertexts = cursor.fetchone()
    assert len(rows) == 1
    canaries.assert_absent(str(rows), "connection columns")
    assert all(value and value.startswith("gAAAAA") for value in ciphertexts)  # Fernet tokens
