"""The HTTP seam: host allowlist, no redirects, timeouts, capped bodies, redacted errors."""

from __future__ import annotations

import socket
import threading

import pytest
import requests
import responses
from django.test import override_settings

from django_datadog_partner import __version__
from django_datadog_partner.client import DatadogClient, get_session
from django_datadog_partner.exceptions import (
    DatadogPartnerError,
    RetryableError,
    TransportRefusedError,
    describe_response,
)

US5 = "https://api.us5.datadoghq.com"


def test_requests_go_to_the_table_host_with_our_user_agent(mocked_http):
    mocked_http.post(f"{US5}/api/v1/events", status=202, json={"status": "ok"})
    response = DatadogClient("us5.datadoghq.com").request(
        "POST", DatadogClient("us5.datadoghq.com").api_url("/api/v1/events"), json={"a": 1}
    )
    assert response.status_code == 202
    assert response.json() == {"status": "ok"}
    assert mocked_http.calls[0].request.headers["User-Agent"] == (
        f"django-datadog-partner/{__version__}"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/oauth2/v1/token",
        "https://app.datadoghq.com/oauth2/v1/token",  # a web host is not an API host
        "https://api.datadoghq.com.evil.example/x",
        "http://api.datadoghq.com/x",  # downgraded scheme
        "https://api.datadoghq.com:444/x",
    ],
)
def test_hosts_outside_the_table_are_refused_before_any_io(mocked_http, url):
    with pytest.raises(TransportRefusedError):
        DatadogClient("datadoghq.com").request("POST", url, data={"client_secret": "x"})
    assert len(mocked_http.calls) == 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_never_followed(mocked_http, status):
    mocked_http.post(
        f"{US5}/oauth2/v1/token",
        status=status,
        headers={"Location": "https://evil.example/steal"},
    )
    mocked_http.post("https://evil.example/steal", status=200)
    with pytest.raises(TransportRefusedError) as excinfo:
        DatadogClient("us5.datadoghq.com").request(
            "POST", f"{US5}/oauth2/v1/token", data={"client_secret": "cs-canary"}
        )
    assert excinfo.value.status_code == status
    assert [call.request.url for call in mocked_http.calls] == [f"{US5}/oauth2/v1/token"]
    assert "cs-canary" not in str(excinfo.value)


def test_connection_errors_are_retryable(mocked_http):
    mocked_http.get(f"{US5}/api/v1/validate", body=requests.ConnectionError("reset"))
    with pytest.raises(RetryableError, match="Could not reach Datadog"):
        DatadogClient("us5.datadoghq.com").request("GET", f"{US5}/api/v1/validate")


def test_oversized_answers_are_cut_off(mocked_http):
    mocked_http.get(f"{US5}/api/v1/validate", body=b"x" * 2048)
    with (
        override_settings(DATADOG_PARTNER={"MAX_RESPONSE_BYTES": 1024}),
        pytest.raises(RetryableError, match="exceeded 1024 bytes"),
    ):
        DatadogClient("us5.datadoghq.com").request("GET", f"{US5}/api/v1/validate")


def test_error_answers_are_returned_for_the_caller_to_classify(mocked_http):
    mocked_http.post(f"{US5}/api/v1/events", status=503, body="<html>bad gateway</html>")
    response = DatadogClient("us5.datadoghq.com").request("POST", f"{US5}/api/v1/events")
    assert response.status_code == 503


def test_session_has_no_environment_lookups_and_no_urllib3_retries():
    session = get_session()
    assert session.trust_env is False
    adapter = session.get_adapter(US5)
    assert adapter.max_retries.total == 0  # type: ignore[attr-defined]
    assert get_session() is session


def test_response_summary_keeps_error_codes_and_drops_everything_else(mocked_http):
    mocked_http.post(
        f"{US5}/oauth2/v1/token?client_secret=leak",
        status=400,
        json={"errors": ["invalid_grant - Invalid code"], "access_token": "at-canary"},
    )
    response = DatadogClient("us5.datadoghq.com").request(
        "POST", f"{US5}/oauth2/v1/token?client_secret=leak"
    )
    summary = describe_response(response)
    assert (
        summary
        == "HTTP 400 from api.us5.datadoghq.com/oauth2/v1/token: invalid_grant - Invalid code"
    )
    error = DatadogPartnerError("Token exchange failed", response=response)
    assert "at-canary" not in str(error) and "leak" not in str(error)
    assert error.status_code == 400


def test_response_summary_names_the_rate_limit(mocked_http):
    headers = {"X-RateLimit-Name": "token_refresh", "X-RateLimit-Limit": "5",
               "X-RateLimit-Period": "10", "X-RateLimit-Reset": "3"}  # fmt: skip
    mocked_http.post(f"{US5}/oauth2/v1/token", status=429, headers=headers, json={"errors": []})
    response = DatadogClient("us5.datadoghq.com").request("POST", f"{US5}/oauth2/v1/token")
    assert describe_response(response) == (
        "HTTP 429 from api.us5.datadoghq.com/oauth2/v1/token (rate limit token_refresh: 5 per 10 s)"
    )
    headers = {"X-RateLimit-Name": "odd\x1bname"}
    mocked_http.post(f"{US5}/api/v1/x", status=429, headers=headers)
    response = DatadogClient("us5.datadoghq.com").request("POST", f"{US5}/api/v1/x")
    assert describe_response(response) == "HTTP 429 from api.us5.datadoghq.com/api/v1/x"


def test_rfc6749_error_bodies_are_summarised(mocked_http):
    mocked_http.post(
        f"{US5}/oauth2/v1/token",
        status=401,
        json={"error": "invalid_client", "error_description": "bad secret"},
    )
    response = DatadogClient("us5.datadoghq.com").request("POST", f"{US5}/oauth2/v1/token")
    assert describe_response(response).endswith("invalid_client - bad secret")


@pytest.fixture
def black_hole():
    """A loopback server that accepts connections and never answers (AT-24)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for sock in accepted:
        sock.close()
    server.close()


def test_a_silent_server_fails_within_the_timeout(black_hole):
    base = f"http://127.0.0.1:{black_hole}"
    site = {"web_url": base, "api_url": base, "logs_url": base}
    with (
        override_settings(
            DATADOG_PARTNER={"EXTRA_SITES": {"hole.test": site}, "HTTP_TIMEOUT": (0.5, 0.3)}
        ),
        responses.RequestsMock() as rsps,
    ):
        rsps.add_passthru(base)
        with pytest.raises(RetryableError, match="did not answer in time"):
            DatadogClient("hole.test").request("GET", f"{base}/api/v1/validate")
