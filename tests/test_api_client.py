"""Datadog's official client on a connection's token: the sandbox answers it end to end; a
loopback server plays the 401 and the redirect; ``responses`` answers token refreshes."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from datadog_api_client.exceptions import ApiException, ForbiddenException
from datadog_api_client.v2.api.users_api import UsersApi

from django_datadog_partner import api
from django_datadog_partner.exceptions import NeedsReconnectError
from django_datadog_partner.models import Connection, ConnectionStatus
from django_datadog_partner.sandbox.control import Sandbox
from django_datadog_partner.testing import make_connection
from tests.lifecycle_support import TOKEN_URL, token_json

USER = {"data": {"type": "users", "id": "u-1", "attributes": {"name": "Ada"}}}


# --- configuration (no request to Datadog's API) -------------------------------------------


@pytest.mark.django_db
def test_the_client_targets_the_connections_region_with_its_fresh_token_only(
    mocked_http, monkeypatch, settings
):
    monkeypatch.setenv("DD_API_KEY", "vendor-api-key")
    monkeypatch.setenv("DD_APP_KEY", "vendor-app-key")
    monkeypatch.setenv("DD_SITE", "datadoghq.com")
    eu_token = TOKEN_URL.replace("datadoghq.com", "datadoghq.eu")
    mocked_http.post(eu_token, json=token_json())
    connection = make_connection(domain="datadoghq.eu", expires_in=60)  # inside the leeway

    with api.api_client_for(connection) as client:
        configuration = client.configuration
        assert configuration.host == "https://api.datadoghq.eu"
        assert configuration.auth_settings() == {
            "AuthZ": {
                "type": "oauth2",
                "in": "header",
                "key": "Authorization",
                "value": "Bearer at-new",
            }
        }
        assert configuration.request_timeout == (3.05, 10.0)
    assert [call.request.url for call in mocked_http.calls] == [eu_token]
    stored = Connection.objects.get(pk=connection.pk).access_token
    assert stored is not None and stored.reveal() == "at-new"


@pytest.mark.django_db
@pytest.mark.parametrize("status", [ConnectionStatus.NEEDS_RECONNECT, ConnectionStatus.REVOKED])
def test_an_unusable_connection_is_refused_before_any_request(mocked_http, status):
    with pytest.raises(NeedsReconnectError):
        api.api_client_for(make_connection(status=status))
    assert len(mocked_http.calls) == 0


@pytest.mark.django_db
def test_without_the_extra_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "datadog_api_client", None)
    monkeypatch.delitem(sys.modules, "django_datadog_partner.api_client")
    with pytest.raises(ImportError) as raised:
        api.api_client_for(make_connection())
    assert "pip install 'django-datadog-partner[api-client]'" in str(raised.value)


# --- the sandbox, served by live_server --------------------------------------------------------


@pytest.fixture
def sandbox_site(live_server: Any, partner_settings: Any) -> str:
    url = live_server.url + "/sandbox"
    domain = "sandbox-api.test"
    extra = {domain: {"web_url": url, "api_url": url, "logs_url": url}}
    partner_settings(EXTRA_SITES=extra)
    return domain


def sandbox_connection(sandbox: Sandbox, domain: str, **fields: Any) -> tuple[Connection, Any]:
    org = sandbox.create_org("Typed Org")
    user = sandbox.create_user(org, "Grace")
    grant = sandbox.grant(org, user)
    fields.setdefault("access_token", grant.access_token)
    connection = make_connection(
        domain=domain, site="", refresh_token=grant.refresh_token, dd_org_id=org.public_id,
        **fields,
    )  # fmt: skip
    return connection, user


@pytest.mark.usefixtures("transactional_db")
def test_typed_calls_reach_the_sandbox_with_the_connections_token(sandbox_site):
    connection, user = sandbox_connection(Sandbox(), sandbox_site)
    with api.api_client_for(connection) as client:
        answer = UsersApi(client).list_user_organizations(user.public_id)
    assert answer.data.id == user.public_id
    assert answer.included[0].attributes.name == "Typed Org"


@pytest.mark.usefixtures("transactional_db")
def test_an_expired_token_is_refreshed_at_the_sandbox_before_the_call(sandbox_site):
    connection, user = sandbox_connection(Sandbox(), sandbox_site, expires_in=-10)
    stale = connection.access_token
    assert stale is not None
    with api.api_client_for(connection) as client:
        answer = UsersApi(client).list_user_organizations(user.public_id)
    assert answer.data.id == user.public_id
    stored = Connection.objects.get(pk=connection.pk)
    assert stored.access_token is not None and stored.status == ConnectionStatus.ACTIVE
    assert stored.access_token.reveal() != stale.reveal()


@pytest.mark.usefixtures("transactional_db")
def test_datadogs_refusals_stay_the_clients_own_exceptions(sandbox_site):
    connection, user = sandbox_connection(Sandbox(), sandbox_site, access_token="not-issued")
    with api.api_client_for(connection) as client, pytest.raises(ForbiddenException):
        UsersApi(client).list_user_organizations(user.public_id)
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.ACTIVE


# --- a loopback server: 401 then 200, and a redirect ---------------------------------------------


class Script(BaseHTTPRequestHandler):
    """Answers the token endpoint, then the scripted answers of the API in order."""

    answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []
    seen: list[tuple[str, str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append((self.path, ""))
        self._send(200, {}, token_json(access="at-refreshed"))

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        self._send(*self.answers.pop(0))

    def _send(self, status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted(partner_settings: Any) -> Iterator[type[Script]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Script)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    extra = {"scripted.test": {"web_url": url, "api_url": url, "logs_url": url}}
    partner_settings(EXTRA_SITES=extra)
    Script.answers, Script.seen = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Script
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_a_401_refreshes_once_and_sends_again_with_the_new_token(scripted):
    scripted.answers = [(401, {}, {"errors": ["Unauthorized"]}), (200, {}, USER)]
    connection = make_connection(domain="scripted.test", site="")
    with api.api_client_for(connection) as client:
        assert UsersApi(client).get_user("u-1").data.id == "u-1"
    assert scripted.seen == [
        ("/api/v2/users/u-1", "Bearer at-old"),
        ("/oauth2/v1/token", ""),
        ("/api/v2/users/u-1", "Bearer at-refreshed"),
    ]


@pytest.mark.django_db
def test_a_second_401_is_raised_after_one_refresh(scripted):
    scripted.answers = [(401, {}, {"errors": ["Unauthorized"]})] * 2
    connection = make_connection(domain="scripted.test", site="")
    with api.api_client_for(connection) as client, pytest.raises(ApiException) as raised:
        UsersApi(client).get_user("u-1")
    assert raised.value.status == 401
    assert [path for path, _ in scripted.seen].count("/oauth2/v1/token") == 1


@pytest.mark.django_db
def test_redirects_are_not_followed(scripted):
    elsewhere = "http://127.0.0.1:9/api/v2/users/u-1"
    scripted.answers = [(307, {"Location": elsewhere}, {})]
    connection = make_connection(domain="scripted.test", site="")
    with api.api_client_for(connection) as client, pytest.raises(ApiException) as raised:
        UsersApi(client).get_user("u-1")
    assert raised.value.status == 307
    assert len(scripted.seen) == 1
