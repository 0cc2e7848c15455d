"""TLS against real loopback servers (AT-66): a certificate that fails verification is
refused and never retried; a broken handshake is a transient failure, retried."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from django_datadog_partner import delivery, tracking
from django_datadog_partner.client import DatadogClient
from django_datadog_partner.exceptions import RetryableError, TransportRefusedError
from django_datadog_partner.models import Alarm, OutboxEvent, OutboxStatus
from django_datadog_partner.testing import make_connection
from tests.loopback import tcp_server
from tests.testapp.models import Organization

SITE = "tls.test"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def untrusted_https(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate; records what reached it."""
    reached: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            reached.append(self.path)
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", reached
    server.shutdown()
    server.server_close()


@pytest.fixture
def plaintext_speaker() -> Iterator[str]:
    """Answers a TLS client hello with plain HTTP: the handshake breaks."""

    def speak(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    with tcp_server(speak) as port:
        yield f"https://127.0.0.1:{port}"


def site_at(partner_settings: Any, base: str) -> Any:
    """``SITE`` answering at ``base``, with short timeouts."""
    return partner_settings(
        EXTRA_SITES={SITE: {"web_url": base, "api_url": base, "logs_url": base}},
        HTTP_TIMEOUT=(2, 2),
    )


def test_an_unverifiable_certificate_is_refused_and_nothing_is_sent(
    untrusted_https, canaries, partner_settings
):
    base, reached = untrusted_https
    with (
        site_at(partner_settings, base),
        pytest.raises(TransportRefusedError, match="could not be verified") as exc,
    ):
        DatadogClient(SITE).request(
            "POST", f"{base}/api/v1/events", headers={"DD-API-KEY": canaries["api_key"]}
        )
    assert reached == []
    canaries.assert_absent(str(exc.value))


def test_a_broken_handshake_is_retryable(plaintext_speaker, partner_settings):
    with (
        site_at(partner_settings, plaintext_speaker),
        pytest.raises(RetryableError, match="TLS with Datadog"),
    ):
        DatadogClient(SITE).request("POST", f"{plaintext_speaker}/api/v1/events")


@pytest.mark.django_db
def test_delivery_dead_letters_with_an_alarm_instead_of_retrying(untrusted_https, partner_settings):
    base, reached = untrusted_https
    with site_at(partner_settings, base):
        conn = make_connection(Organization.objects.create(name="o"), domain=SITE)
        tracking.send_event(conn, title="t", text="x")
        delivery.drain()
    row = OutboxEvent.objects.get()
    assert (row.status, row.last_error_code, row.attempts) == (
        OutboxStatus.DEAD,
        "transport_refused",
        1,
    )
    assert "could not be verified" in Alarm.objects.get(code="intake_transport_refused").message
    assert reached == []
