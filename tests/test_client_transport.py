"""The seam's own transport (a keep-alive HTTP/1.1 client on sockets) against real
loopback servers: the same guarantees the ``responses`` tests of ``test_client.py`` check
through ``requests``."""

from __future__ import annotations

import errno
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import responses
from django.test import override_settings

from django_datadog_partner import __version__, transport
from django_datadog_partner.client import DatadogClient, classify
from django_datadog_partner.exceptions import (
    AnswerLostError,
    OutOfDescriptorsError,
    RetryableError,
    TransportRefusedError,
    describe_response,
)
from tests.loopback import tcp_server

SITE = "loop.test"


def read_request(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    received = b""
    while b"\r\n\r\n" not in received:
        try:
            chunk = sock.recv(65536)
        except OSError:  # closed at the end of the test
            return b""
        if not chunk:
            return b""
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n")
         if line.lower().startswith(b"content-length:")),
        0,
    )  # fmt: skip
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@contextmanager
def server(answer: Callable[[bytes], bytes | None], timeouts=(1.0, 1.0)) -> Iterator[str]:
    """A loopback site answering each request with ``answer(request)`` (None: hang up)."""
    seen: list[bytes] = []

    def handle(sock: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            request = read_request(sock)
            if not request:
                return
            seen.append(request)
            reply = answer(request)
            if reply is None:
                sock.close()
                return
            sock.sendall(reply)

    with tcp_server(handle) as port:
        base = f"http://127.0.0.1:{port}"
        site = {"web_url": base, "api_url": base, "logs_url": base}
        with override_settings(
            DATADOG_PARTNER={"EXTRA_SITES": {SITE: site}, "HTTP_TIMEOUT": timeouts}
        ):
            server.seen = seen  # type: ignore[attr-defined]
            yield base


def http(status: str, body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: application/json\r\n" + extra
        + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


def test_no_mock_means_the_seam_sends_through_its_own_transport():
    assert not transport.requests_patched()
    with responses.RequestsMock():
        assert transport.requests_patched()
    assert not transport.requests_patched()


def test_a_post_arrives_with_our_user_agent_and_body_over_one_kept_alive_connection():
    with server(lambda request: http("202 Accepted", b'{"status":"ok"}')) as base:
        client = DatadogClient(SITE)
        for _ in range(3):
            response = client.request(
                "POST", f"{base}/api/v1/events", headers={"DD-API-KEY": "k"}, data=b'{"a":1}'
            )
            assert (response.status_code, response.json()) == (202, {"status": "ok"})
            assert classify(response).verdict == "success"
        seen = server.seen  # type: ignore[attr-defined]
    assert len(seen) == 3
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /api/v1/events HTTP/1.1")
    assert f"User-Agent: django-datadog-partner/{__version__}".encode() in head
    assert body == b'{"a":1}'
    assert transport.idle_connections(base) == 1  # one connection, reused
    assert describe_response(response).startswith("HTTP 202 from 127.0.0.1")


def test_a_forked_child_closes_its_copies_of_the_parents_idle_connections():
    """They are not the child's to use, and it does not count them: left to the collector
    (each connection and its origin refer to each other), they took descriptors the
    child's budget gives to its own sockets."""
    with server(lambda request: http("202 Accepted")) as base:
        DatadogClient(SITE).request("POST", f"{base}/api/v1/events", data=b"{}")
        [kept] = transport.origin_of(base).idle
        descriptor = kept.sock.fileno()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through its exit status
            try:
                os.fstat(descriptor)
            except OSError:
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0  # closed in the child
        assert kept.alive() and transport.idle_connections(base) == 1  # open in the parent
        DatadogClient(SITE).request("POST", f"{base}/api/v1/events", data=b"{}")
        assert len(server.seen) == 2  # type: ignore[attr-defined]


def test_a_child_forked_while_a_parent_thread_held_the_transport_lock_can_connect():
    """A fork while another thread made an origin left the child's copy of the lock
    held, by a thread the child does not have: its first request waited forever."""
    holding, release = threading.Event(), threading.Event()

    def making_an_origin() -> None:
        with transport._lock:
            holding.set()
            release.wait()

    thread = threading.Thread(target=making_an_origin)
    thread.start()
    holding.wait()
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through its exit status
            signal.alarm(5)  # killed by SIGALRM if it waits for the lock
            transport.origin_of("http://127.0.0.1:9")
            os._exit(0)
    finally:
        release.set()
        thread.join()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_process_out_of_descriptors_is_told_so_and_sends_nothing(monkeypatch):
    def no_descriptor_left(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    with server(lambda request: http("202 Accepted")) as base:
        monkeypatch.setattr(transport.socket, "create_connection", no_descriptor_left)
        with pytest.raises(OutOfDescriptorsError, match="RLIMIT_NOFILE"):
            DatadogClient(SITE).request("POST", f"{base}/api/v1/events", data=b"{}")
        assert server.seen == []  # type: ignore[attr-defined]


def test_a_name_lookup_that_finds_no_descriptor_is_told_so(monkeypatch):
    """Looking a name up needs descriptors too; with none left glibc answers ``EBUSY``,
    which would have read as a site that does not answer."""

    def lookup_failed(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(errno.EBUSY, "Device or resource busy")

    with server(lambda request: http("202 Accepted")) as base:
        monkeypatch.setattr(transport.socket, "create_connection", lookup_failed)
        client = DatadogClient(SITE)
        with pytest.raises(RetryableError) as not_exhausted:
            client.request("POST", f"{base}/api/v1/events", data=b"{}")
        assert not isinstance(not_exhausted.value, OutOfDescriptorsError)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest_free = os.dup(0)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # none left
        try:
            with pytest.raises(OutOfDescriptorsError):
                client.request("POST", f"{base}/api/v1/events", data=b"{}")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_json_form_and_params_are_encoded_as_requests_would():
    with server(lambda request: http("200 OK")) as base:
        client = DatadogClient(SITE)
        client.request("POST", f"{base}/j", json={"x": [1, 2]})
        client.request("POST", f"{base}/f", data={"grant_type": "x y"}, params={"q": "1"})
        seen = server.seen  # type: ignore[attr-defined]
    assert b"Content-Type: application/json" in seen[0]
    assert seen[0].endswith(b'{"x": [1, 2]}')
    assert seen[1].startswith(b"POST /f?q=1 HTTP/1.1")
    assert b"application/x-www-form-urlencoded" in seen[1]
    assert seen[1].endswith(b"grant_type=x+y")


@pytest.mark.parametrize("status", ["301 Moved", "302 Found", "307 Temporary Redirect"])
def test_redirects_are_refused_not_followed(status):
    location = b"Location: http://127.0.0.1:1/steal\r\n"
    with (
        server(lambda request: http(status, b"", location)) as base,
        pytest.raises(TransportRefusedError, match="redirects are never followed"),
    ):
        DatadogClient(SITE).request("POST", f"{base}/oauth2/v1/token")
    assert len(server.seen) == 1  # type: ignore[attr-defined]


def test_hosts_outside_the_table_are_refused():
    with pytest.raises(TransportRefusedError, match="not a configured Datadog site"):
        DatadogClient("datadoghq.com").request("GET", "http://127.0.0.1:9/x")


def test_oversized_answers_are_cut_off():
    with (
        server(lambda request: http("200 OK", b"x" * 4096)) as base,
        override_settings(
            DATADOG_PARTNER={
                "EXTRA_SITES": {SITE: {"web_url": base, "api_url": base, "logs_url": base}},
                "MAX_RESPONSE_BYTES": 1024,
            }
        ),
        pytest.raises(AnswerLostError, match="exceeded 1024 bytes"),
    ):
        DatadogClient(SITE).request("GET", f"{base}/api/v1/validate")


def test_a_closed_port_is_retryable_and_nothing_was_sent():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    site = {"web_url": base, "api_url": base, "logs_url": base}
    with (
        override_settings(DATADOG_PARTNER={"EXTRA_SITES": {SITE: site}}),
        pytest.raises(RetryableError, match="Could not reach Datadog") as exc,
    ):
        DatadogClient(SITE).request("POST", f"{base}/api/v1/events")
    assert not isinstance(exc.value, AnswerLostError)


def test_a_hang_up_after_the_request_means_the_answer_was_lost():
    with (
        server(lambda request: None) as base,
        pytest.raises(AnswerLostError, match="closed the connection without answering"),
    ):
        DatadogClient(SITE).request("POST", f"{base}/api/v1/events", data=b"{}")


def test_a_silent_server_fails_within_the_deadline():
    with tcp_server(lambda conn, stop: None) as port:
        base = f"http://127.0.0.1:{port}"
        site = {"web_url": base, "api_url": base, "logs_url": base}
        with override_settings(
            DATADOG_PARTNER={"EXTRA_SITES": {SITE: site}, "HTTP_TIMEOUT": (0.5, 0.3)}
        ):
            started = time.monotonic()
            with pytest.raises(AnswerLostError, match="did not answer in time"):
                DatadogClient(SITE).request("GET", f"{base}/api/v1/validate")
    assert time.monotonic() - started < 2


def test_a_slow_drip_ends_at_the_calls_deadline():
    def drip(sock: socket.socket, stop: threading.Event) -> None:
        read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")
        for _ in range(40):
            if stop.wait(0.2):
                return
            try:
                sock.sendall(b" ")
            except OSError:
                return

    with tcp_server(drip) as port:
        base = f"http://127.0.0.1:{port}"
        site = {"web_url": base, "api_url": base, "logs_url": base}
        with override_settings(
            DATADOG_PARTNER={"EXTRA_SITES": {SITE: site}, "HTTP_TIMEOUT": (0.5, 0.5)}
        ):
            started = time.monotonic()
            with pytest.raises(AnswerLostError, match="did not answer in time"):
                DatadogClient(SITE).request("GET", f"{base}/api/v1/validate")
    assert time.monotonic() - started < 3


def test_the_transport_verifies_tls_never_retries_and_reads_no_proxy_from_the_environment(
    monkeypatch,
):
    import ssl

    context = transport.tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) > 50  # certifi's bundle
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:1")
    with server(lambda request: http("503 Service Unavailable")) as base:
        response = DatadogClient(SITE).request("POST", f"{base}/api/v1/events", data=b"{}")
        assert response.status_code == 503
        assert len(server.seen) == 1  # type: ignore[attr-defined]  # not retried, not proxied
    assert transport.origin_of("https://api.datadoghq.com") is transport.origin_of(
        "https://api.datadoghq.com"
    )  # looked up once per origin
