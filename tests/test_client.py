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
from tests.loopback import tcp_server

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
    with tcp_server(lambda conn, stop: None) as port:
        yield port


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


DRIP_BYTES = 40
DRIP_EVERY = 0.2  # well inside the read timeout: no single socket read ever times out


@pytest.fixture
def slow_drip(request):
    """A loopback server that answers one byte every 0.2 s: in the headers or in the body.

    Each read gets its byte long before the read timeout, so only an overall deadline
    stops the call before the whole answer (about 8 s) has trickled in.
    """
    where = request.param

    def drip(sock: socket.socket, stop: threading.Event) -> None:
        sock.settimeout(5)
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(4096)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if where == "headers":
            sock.sendall(head + b"X-Drip: ")
            trickle, tail = b"x" * DRIP_BYTES, b"\r\nContent-Length: 2\r\n\r\n{}"
        else:
            sock.sendall(head + b"Content-Length: %d\r\n\r\n" % (DRIP_BYTES + 2))
            trickle, tail = b" " * DRIP_BYTES, b"{}"
        try:
            for byte in trickle:
                if stop.wait(DRIP_EVERY):
                    return
                sock.sendall(bytes([byte]))
            sock.sendall(tail)
        except OSError:
            return  # the client gave up: what the deadline is for

    with tcp_server(drip) as port:
        yield port


@pytest.mark.parametrize("slow_drip", ["headers", "body"], indirect=True)
def test_a_slow_drip_answer_ends_at_the_calls_deadline(slow_drip):
    """One deadline (connect + read timeout) bounds the whole call, however the bytes come."""
    import time

    base = f"http://127.0.0.1:{slow_drip}"
    site = {"web_url": base, "api_url": base, "logs_url": base}
    timeouts = (0.5, 0.5)
    with (
        override_settings(
            DATADOG_PARTNER={"EXTRA_SITES": {"drip.test": site}, "HTTP_TIMEOUT": timeouts}
        ),
        responses.RequestsMock() as rsps,
    ):
        rsps.add_passthru(base)
        started = time.monotonic()
        with pytest.raises(RetryableError, match="did not answer in time"):
            DatadogClient("drip.test").request("GET", f"{base}/api/v1/validate")
        elapsed = time.monotonic() - started
    assert elapsed < 3 * sum(timeouts), f"the call lasted {elapsed:.2f} s"
