"""The seam's own HTTP/1.1 client against real loopback servers: framing (chunked, close,
1xx, compressed), keep-alive reuse and its limits, header injection, TLS that verifies."""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
from pathlib import Path

import pytest
from django.test import override_settings

from django_datadog_partner import transport
from django_datadog_partner.client import DatadogClient
from django_datadog_partner.exceptions import (
    AnswerLostError,
    DatadogPartnerError,
    RetryableError,
)
from tests.loopback import tcp_server
from tests.test_client_tls import self_signed
from tests.test_client_transport import SITE, http, read_request, server


def post(base: str, path: str = "/api/v1/events") -> object:
    return DatadogClient(SITE).request("POST", f"{base}{path}", data=b"{}")


def test_a_chunked_answer_is_read_whole_and_its_connection_kept():
    body = b'5\r\n{"a":\r\n3;ext=1\r\n 1}\r\n0\r\nTrailer: x\r\n\r\n'
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    with server(lambda request: answer) as base:
        for _ in range(2):
            assert post(base).json() == {"a": 1}  # type: ignore[attr-defined]
        assert transport.idle_connections(base) == 1


def test_interim_answers_are_skipped():
    with server(lambda request: b"HTTP/1.1 100 Continue\r\n\r\n" + http("202 Accepted")) as base:
        assert post(base).status_code == 202  # type: ignore[attr-defined]


def test_connection_close_and_unframed_answers_are_not_reused():
    closing = http("200 OK", b"{}", b"Connection: close\r\n")
    with server(lambda request: closing) as base:
        post(base)
        assert transport.idle_connections(base) == 0
    opened: list[int] = []

    def to_the_end(sock: socket.socket, stop: threading.Event) -> None:
        opened.append(1)
        read_request(sock)
        sock.sendall(b'HTTP/1.1 200 OK\r\n\r\n{"until": "close"}')
        sock.close()

    with tcp_server(to_the_end) as port:
        base = f"http://127.0.0.1:{port}"
        sites = {SITE: {"web_url": base, "api_url": base, "logs_url": base}}
        with override_settings(DATADOG_PARTNER={"EXTRA_SITES": sites}):
            assert post(base).json() == {"until": "close"}  # type: ignore[attr-defined]
            post(base)
            assert transport.idle_connections(base) == 0
    assert len(opened) == 2


def test_a_connection_the_server_closed_while_idle_is_not_used_again():
    connections: list[int] = []

    def once(sock: socket.socket, stop: threading.Event) -> None:
        connections.append(1)
        read_request(sock)
        sock.sendall(http("202 Accepted"))
        sock.close()  # without saying so in the answer

    with tcp_server(once) as port:
        base = f"http://127.0.0.1:{port}"
        sites = {SITE: {"web_url": base, "api_url": base, "logs_url": base}}
        with override_settings(DATADOG_PARTNER={"EXTRA_SITES": sites}):
            post(base)
            for _ in range(50):  # until the hang-up has arrived
                if (
                    transport.idle_connections(base)
                    and not transport.origin_of(base).idle[0].alive()
                ):
                    break
                threading.Event().wait(0.01)
            assert post(base).status_code == 202  # type: ignore[attr-defined]
    assert len(connections) == 2


def test_a_gzip_bomb_is_cut_off_at_the_cap_after_decoding():
    bomb = gzip.compress(b"0" * 10_000_000)
    answer = http("200 OK", bomb, b"Content-Encoding: gzip\r\n")
    with (
        server(lambda request: answer) as base,
        override_settings(
            DATADOG_PARTNER={
                "EXTRA_SITES": {SITE: {"web_url": base, "api_url": base, "logs_url": base}},
                "MAX_RESPONSE_BYTES": 100_000,
            }
        ),
        pytest.raises(AnswerLostError, match="exceeded 100000 bytes"),
    ):
        post(base)


def test_a_gzip_answer_is_decoded():
    answer = http("200 OK", gzip.compress(b'{"ok": true}'), b"Content-Encoding: gzip\r\n")
    with server(lambda request: answer) as base:
        assert post(base).json() == {"ok": True}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
    ],
    ids=["too many headers", "a line too long", "not http", "bad length"],
)
def test_a_malformed_head_means_the_answer_was_lost(answer):
    with server(lambda request: answer) as base, pytest.raises(AnswerLostError):
        post(base)


@pytest.mark.parametrize(
    ("status", "error"), [("202 Accepted", AnswerLostError), ("500 Oops", RetryableError)]
)
def test_a_body_cut_short_is_lost_for_a_2xx_and_retryable_otherwise(status, error):
    short = b"HTTP/1.1 " + status.encode() + b"\r\nContent-Length: 100\r\n\r\n{}"
    with server(lambda request: short) as base:
        with pytest.raises(error, match="cut off") as exc:
            post(base)
        assert isinstance(exc.value, AnswerLostError) is (error is AnswerLostError)


@pytest.mark.parametrize("header", [{"X-A": "v\r\nX-Injected: 1"}, {"X-A\r\nB": "v"}])
def test_header_injection_is_refused_before_anything_is_sent(header):
    with server(lambda request: http("200 OK")) as base:
        with pytest.raises(DatadogPartnerError) as exc:
            DatadogClient(SITE).request("GET", f"{base}/x", headers=header)
        assert "Injected" not in str(exc.value)
        assert server.seen == []  # type: ignore[attr-defined]


def test_https_to_a_trusted_certificate_sends_and_keeps_the_connection(tmp_path: Path, monkeypatch):
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen: list[bytes] = []
    handshakes: list[int] = []

    def handle(sock: socket.socket, stop: threading.Event) -> None:
        handshakes.append(1)
        with context.wrap_socket(sock, server_side=True) as tls:
            while request := read_request(tls):
                seen.append(request)
                tls.sendall(http("202 Accepted"))

    client_context = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setitem(transport._tls, "context", client_context)
    with tcp_server(handle) as port:
        base = f"https://127.0.0.1:{port}"
        sites = {SITE: {"web_url": base, "api_url": base, "logs_url": base}}
        with override_settings(DATADOG_PARTNER={"EXTRA_SITES": sites}):
            for _ in range(2):
                assert post(base).status_code == 202  # type: ignore[attr-defined]
            assert transport.idle_connections(base) == 1
    assert len(seen) == 2 and seen[0].startswith(b"POST /api/v1/events HTTP/1.1")
    assert len(handshakes) == 1  # TLS 1.3 session tickets do not make it look hung up
    assert client_context.verify_mode == ssl.CERT_REQUIRED and client_context.check_hostname
