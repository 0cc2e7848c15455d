"""Bearer API access for host code: right host, on-demand refresh, error mapping."""

from __future__ import annotations

import pytest
import requests

from django_datadog_partner.api import api_for
from django_datadog_partner.exceptions import (
    DatadogPartnerError,
    NeedsReconnectError,
    RateLimitedError,
    RetryableError,
    TransportRefusedError,
)
from django_datadog_partner.models import Connection, ConnectionStatus
from django_datadog_partner.testing import make_connection
from tests.lifecycle_support import TOKEN_URL, oauth_error, token_json

pytestmark = pytest.mark.django_db

USERS = "https://api.datadoghq.com/api/v2/users"


@pytest.mark.parametrize(
    ("domain", "host"),
    [
        ("datadoghq.com", "api.datadoghq.com"),
        ("datadoghq.eu", "api.datadoghq.eu"),
        ("us5.datadoghq.com", "api.us5.datadoghq.com"),
        ("ddog-gov.com", "api.ddog-gov.com"),
    ],
)
def test_calls_go_to_the_connections_own_region_with_the_bearer_token(mocked_http, domain, host):
    mocked_http.get(f"https://{host}/api/v2/users", json={"data": [{"id": "u1"}]})
    connection = make_connection(domain=domain, site="https://acme.datadoghq.com")
    body = api_for(connection).get("/api/v2/users", params={"page[size]": "1"})
    assert body == {"data": [{"id": "u1"}]}
    (call,) = mocked_http.calls
    assert call.request.headers["Authorization"] == "Bearer at-old"
    assert call.request.url == f"https://{host}/api/v2/users?page%5Bsize%5D=1"


def test_expired_token_is_refreshed_before_the_call(mocked_http):
    mocked_http.post(TOKEN_URL, json=token_json())
    mocked_http.post("https://api.datadoghq.com/api/v1/monitor", json={"id": 7})
    connection = make_connection(expires_in=60)  # inside the five-minute leeway
    assert api_for(connection).post("/api/v1/monitor", json={"name": "m"}) == {"id": 7}
    assert [c.request.url for c in mocked_http.calls] == [
        TOKEN_URL,
        "https://api.datadoghq.com/api/v1/monitor",
    ]
    assert mocked_http.calls[1].request.headers["Authorization"] == "Bearer at-new"
    assert mocked_http.calls[1].request.body == b'{"name": "m"}'


def test_a_401_triggers_one_refresh_and_one_retry(mocked_http):
    mocked_http.get(USERS, status=401, json={"errors": ["Unauthorized"]})
    mocked_http.get(USERS, json={"data": []})
    mocked_http.post(TOKEN_URL, json=token_json())
    assert api_for(make_connection()).get("/api/v2/users") == {"data": []}
    assert [
        c.request.headers.get("Authorization")
        for c in mocked_http.calls
        if "users" in c.request.url
    ] == [
        "Bearer at-old",
        "Bearer at-new",
    ]


def test_a_second_401_raises_without_touching_the_status(mocked_http):
    mocked_http.get(USERS, status=401, json={"errors": ["Unauthorized"]})
    mocked_http.post(TOKEN_URL, json=token_json())
    connection = make_connection()
    with pytest.raises(DatadogPartnerError) as raised:
        api_for(connection).get("/api/v2/users")
    assert raised.value.status_code == 401
    assert "scope" in str(raised.value)
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.ACTIVE
    assert len([c for c in mocked_http.calls if c.request.url == TOKEN_URL]) == 1


def test_uninstalled_integration_surfaces_as_needs_reconnect(mocked_http):
    mocked_http.post(TOKEN_URL, status=400, body=oauth_error("invalid_grant"))
    connection = make_connection(expires_in=-5)
    with pytest.raises(NeedsReconnectError):
        api_for(connection).get("/api/v2/users")
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.NEEDS_RECONNECT
    assert not [c for c in mocked_http.calls if c.request.url == USERS]


@pytest.mark.parametrize(
    ("response", "error"),
    [
        ({"status": 429, "headers": {"X-RateLimit-Reset": "12"}}, RateLimitedError),
        ({"status": 503}, RetryableError),
        ({"status": 408}, RetryableError),
        ({"body": requests.ReadTimeout()}, RetryableError),
        ({"status": 403, "json": {"errors": ["Forbidden"]}}, DatadogPartnerError),
        ({"status": 404, "json": {"errors": ["Not found"]}}, DatadogPartnerError),
        ({"status": 307, "headers": {"Location": "https://evil.example/"}}, TransportRefusedError),
    ],
)
def test_errors_map_to_package_exceptions(mocked_http, response, error):
    mocked_http.get(USERS, **response)
    connection = make_connection()
    with pytest.raises(error) as raised:
        api_for(connection).get("/api/v2/users")
    if isinstance(raised.value, RateLimitedError):
        assert raised.value.retry_after == 12
    assert Connection.objects.get(pk=connection.pk).status == ConnectionStatus.ACTIVE


def test_error_text_is_redacted_and_names_the_call(mocked_http, canaries):
    mocked_http.get(USERS, status=403, json={"errors": ["Forbidden"]})
    connection = make_connection(access_token=canaries["access_token"])
    with pytest.raises(DatadogPartnerError) as raised:
        api_for(connection).get("/api/v2/users?filter=x")
    text = str(raised.value)
    assert "GET /api/v2/users" in text and "Forbidden" in text and "filter=x" not in text
    canaries.assert_absent(text, "the exception")


@pytest.mark.parametrize("path", ["api/v2/users", "//evil.example/x", "https://evil.example/x"])
def test_only_paths_are_accepted_so_the_host_cannot_be_chosen(mocked_http, path):
    with pytest.raises(ValueError):
        api_for(make_connection()).get(path)
    assert len(mocked_http.calls) == 0


@pytest.mark.parametrize(
    "status",
    [ConnectionStatus.NEEDS_RECONNECT, ConnectionStatus.REVOKED, ConnectionStatus.REVOKING],
)
def test_unusable_connections_send_nothing(mocked_http, status):
    with pytest.raises(NeedsReconnectError):
        api_for(make_connection(status=status)).get("/api/v2/users")
    assert len(mocked_http.calls) == 0


def test_empty_answers_decode_to_none_and_raw_responses_are_available(mocked_http):
    mocked_http.delete("https://api.datadoghq.com/api/v1/monitor/7", status=204)
    mocked_http.get("https://api.datadoghq.com/api/v1/usage", body="a,b\n1,2", status=200)
    api = api_for(make_connection())
    assert api.delete("/api/v1/monitor/7") is None
    assert api.request("GET", "/api/v1/usage").text == "a,b\n1,2"
    with pytest.raises(DatadogPartnerError):
        api.get("/api/v1/usage")
