"""Many requests of the seam in flight on one thread (``client.Call`` on a
``multiplex.Multiplexer``), against real loopback servers: the same guarantees as a call
on the calling thread (deadline, cap, redirects, errors, TLS verified), idle connections
reused before one is opened, and deliveries whose jobs go out on it."""

from __future__ import annotations

import errno
import os
import resource
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import override_settings

from django_datadog_partner import descriptors, transport
from django_datadog_partner.client import Call
from django_datadog_partner.delivery import transmit
from django_datadog_partner.delivery.pacing import Sender
from django_datadog_partner.delivery.transmit import Item, Run, Target
from django_datadog_partner.exceptions import (
    AnswerLostError,
    CertificateRefusedError,
    DatadogPartnerError,
    OutOfDescriptorsError,
    RetryableError,
    TransportRefusedError,
)
from django_datadog_partner.multiplex import Exchange, Multiplexer
from django_datadog_partner.regions import get_site
from tests.loopback import tcp_server
from tests.test_client_tls import self_signed
from tests.test_client_transport import SITE, http, read_request, server

KEY = "k" * 32


def drive(calls: list[Call], mux: Multiplexer | None = None) -> list[object]:
    """Each call's response, or the package's error for it, all made on this thread."""
    own = mux is None
    mux = Multiplexer() if mux is None else mux
    outcome: dict[Call, object] = {}
    for call in calls:
        mux.start(call.exchange)
    until = time.monotonic() + 20
    while len(outcome) < len(calls) and time.monotonic() < until:
        arrived, failed = mux.poll(0.5)
        for exchange in arrived:
            assert isinstance(exchange.tag, Call)
            try:
                got = exchange.tag.answer()
            except DatadogPartnerError as exc:
                mux.settle(exchange, keep=False)
                outcome[exchange.tag] = exc
                continue
            if got is not None:
                mux.settle(exchange, keep=got[1])
                outcome[exchange.tag] = got[0]
        for exchange, error in failed:
            assert isinstance(exchange.tag, Call)
            outcome[exchange.tag] = exchange.tag.failed(error)
    if own:
        mux.close()
    return [outcome[call] for call in calls]


def post(base: str, path: str = "/api/v1/events", **kwargs: object) -> Call:
    return Call("POST", f"{base}{path}", headers={"DD-API-KEY": KEY}, data=b"{}", **kwargs)  # type: ignore[arg-type]


def test_requests_are_in_flight_together_on_one_thread_and_reuse_idle_connections():
    together = threading.Barrier(4, timeout=5)  # breaks unless all four wait at once
    with server(lambda request: (together.wait(), http("202 Accepted"))[1]) as base:
        mux = Multiplexer()
        first = drive([post(base) for _ in range(4)], mux)
        assert [r.status_code for r in first] == [202] * 4  # type: ignore[attr-defined]
        assert mux.opened == 4 and transport.idle_connections(base) == 4
        again = drive([post(base) for _ in range(4)], mux)
        assert [r.status_code for r in again] == [202] * 4  # type: ignore[attr-defined]
        assert mux.opened == 4  # the idle ones, none opened
        mux.close()
    assert all(b"DD-API-KEY: " + KEY.encode() in seen for seen in server.seen)  # type: ignore[attr-defined]


def test_a_silent_server_fails_within_the_calls_deadline():
    with tcp_server(lambda conn, stop: None) as port:
        base = f"http://127.0.0.1:{port}"
        site = {"web_url": base, "api_url": base, "logs_url": base}
        with override_settings(
            DATADOG_PARTNER={"EXTRA_SITES": {SITE: site}, "HTTP_TIMEOUT": (0.5, 0.3)}
        ):
            started = time.monotonic()
            (error,) = drive([post(base)])
    assert isinstance(error, AnswerLostError) and "did not answer in time" in str(error)
    assert time.monotonic() - started < 2
    assert KEY not in str(error)


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
            (error,) = drive([post(base)])
    assert isinstance(error, AnswerLostError) and "did not answer in time" in str(error)
    assert time.monotonic() - started < 3


def test_answers_are_capped_redirects_refused_and_hosts_outside_the_table_refused():
    huge = http("200 OK", b"x" * 5000)
    with (
        server(lambda request: huge) as base,
        override_settings(
            DATADOG_PARTNER={
                "EXTRA_SITES": {SITE: {"web_url": base, "api_url": base, "logs_url": base}},
                "MAX_RESPONSE_BYTES": 1024,
            }
        ),
    ):
        (capped,) = drive([post(base)])
    assert isinstance(capped, AnswerLostError) and "exceeded 1024 bytes" in str(capped)
    moved = http("302 Found", b"", b"Location: https://elsewhere.example/\r\n")
    with server(lambda request: moved) as base:
        (redirect,) = drive([post(base)])
        assert isinstance(redirect, TransportRefusedError)
        assert len(server.seen) == 1  # type: ignore[attr-defined]
    with pytest.raises(TransportRefusedError):
        post("https://attacker.example")


def test_a_closed_port_is_retryable_and_a_hang_up_means_the_answer_was_lost():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with override_settings(
        DATADOG_PARTNER={
            "EXTRA_SITES": {SITE: {"web_url": base, "api_url": base, "logs_url": base}}
        }
    ):
        (refused,) = drive([post(base)])
    assert isinstance(refused, RetryableError) and not isinstance(refused, AnswerLostError)
    assert "Could not reach Datadog" in str(refused)
    with server(lambda request: None) as base:
        (lost,) = drive([post(base)])
    assert isinstance(lost, AnswerLostError)
    assert "closed the connection without answering" in str(lost)


def test_tls_is_verified_on_the_non_blocking_handshake(tmp_path: Path, monkeypatch):
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def handle(sock: socket.socket, stop: threading.Event) -> None:
        try:
            with context.wrap_socket(sock, server_side=True) as tls:
                while read_request(tls):
                    tls.sendall(http("202 Accepted"))
        except (ssl.SSLError, OSError):
            return

    with tcp_server(handle) as port:
        base = f"https://127.0.0.1:{port}"
        sites = {SITE: {"web_url": base, "api_url": base, "logs_url": base}}
        with override_settings(DATADOG_PARTNER={"EXTRA_SITES": sites}):
            (untrusted,) = drive([post(base)])  # certifi's bundle does not know it
            assert isinstance(untrusted, CertificateRefusedError)
            monkeypatch.setitem(
                transport._tls, "context", ssl.create_default_context(cafile=str(cert))
            )
            answers = drive([post(base) for _ in range(3)])
    assert [a.status_code for a in answers] == [202] * 3  # type: ignore[attr-defined]


# --- deliveries through the sender -----------------------------------------------------------


def target() -> Target:
    return Target(1, get_site(SITE), KEY)


def events(count: int) -> list[tuple[str, transmit.Job]]:
    return [
        (SITE, transmit.EventJob(target(), Item(n, "event", {"title": "t", "text": "x"})))
        for n in range(1, count + 1)
    ]


def fixed(limit: int) -> Sender:
    """A sender whose limit stays at ``limit``."""

    def unmoved(wall: float, cpu: float, weight: float) -> None:
        pass

    sender = Sender(16, start=limit)
    sender._observe_damped = unmoved  # type: ignore[method-assign]
    return sender


def test_a_sender_keeps_its_limit_in_flight_on_one_thread_with_no_more_connections():
    in_flight = {"now": 0, "most": 0}
    lock = threading.Lock()
    connections: list[int] = []

    def handle(sock: socket.socket, stop: threading.Event) -> None:
        connections.append(1)
        while read_request(sock):
            with lock:
                in_flight["now"] += 1
                in_flight["most"] = max(in_flight["most"], in_flight["now"])
            time.sleep(0.05)
            with lock:
                in_flight["now"] -= 1
            sock.sendall(http("202 Accepted"))

    with tcp_server(handle) as port:
        base = f"http://127.0.0.1:{port}"
        sites = {SITE: {"web_url": base, "api_url": base, "logs_url": base}}
        with override_settings(DATADOG_PARTNER={"EXTRA_SITES": sites}), fixed(4) as sender:
            results = [
                r for batch in sender.run(events(20), Run(time.monotonic() + 60)) for r in batch
            ]
            senders = [t for t in threading.enumerate() if t.name.startswith("ddp-send")]
    assert senders == []  # every request was made on this thread
    assert sorted(r.row_ids[0] for r in results) == list(range(1, 21))
    assert {r.verdict for r in results} == {transmit.DELIVERED}
    assert in_flight["most"] == 4 and len(connections) == 4


@pytest.mark.parametrize("limit", [2, 4], ids=["threads", "multiplexer"])
def test_answers_that_call_for_more_requests_are_followed_on_a_thread(limit: int):
    """A 403 asks validate once; a 413 is shrunk and sent again: on the multiplexer (four
    in flight), after the first request went out there."""

    def answer(request: bytes) -> bytes:
        if request.startswith(b"GET /api/v1/validate"):
            return http("200 OK", b'{"valid": false}')
        if b'"title":"big"' in request and len(request) > 4000:
            return http("413 Too Large")
        if b'"title":"denied"' in request:
            return http("403 Forbidden")
        return http("202 Accepted")

    with server(answer), fixed(limit) as sender:
        jobs = [
            (SITE, transmit.EventJob(target(), Item(1, "event", {"title": "denied", "text": "x"}))),
            (
                SITE,
                transmit.EventJob(target(), Item(2, "event", {"title": "big", "text": "x" * 5000})),
            ),
        ]
        results = {
            r.row_ids[0]: r for batch in sender.run(jobs, Run(time.monotonic() + 60)) for r in batch
        }
        seen = list(server.seen)  # type: ignore[attr-defined]
    assert results[1].verdict == transmit.REJECTED
    assert results[2].verdict == transmit.DELIVERED and results[2].new_payload is not None
    assert sum(r.startswith(b"GET /api/v1/validate") for r in seen) == 1
    assert len(seen) == 4  # two events, one validate, one shrunk event


def test_on_the_multiplexer_a_run_past_its_lease_sends_nothing():
    with override_settings(DATADOG_PARTNER={"EXTRA_SITES": sites_at(9)}), fixed(4) as sender:
        results = [r for batch in sender.run(events(3), Run(time.monotonic() - 1)) for r in batch]
    assert [(r.verdict, r.code) for r in results] == [(transmit.RELEASED, "lease_ending")] * 3


def test_on_the_multiplexer_refusals_and_hang_ups_are_retried_not_lost():
    """A closed port fails the connect; a server that hangs up mid-answer loses it: both
    leave the rows to retry, with the site's fault noted."""
    with tcp_server(lambda sock, stop: None) as closed:
        pass  # the port is closed again once the server stops

    def hang_up(sock: socket.socket, stop: threading.Event) -> None:
        if read_request(sock):
            sock.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nabc")

    for handler in (None, hang_up):
        if handler is None:
            port = closed
            context = override_settings(DATADOG_PARTNER={"EXTRA_SITES": sites_at(port)})
            with context, fixed(4) as sender:
                results = [r for b in sender.run(events(2), Run(time.monotonic() + 30)) for r in b]
        else:
            with tcp_server(handler) as port:
                context = override_settings(DATADOG_PARTNER={"EXTRA_SITES": sites_at(port)})
                with context, fixed(4) as sender:
                    results = [
                        r for b in sender.run(events(2), Run(time.monotonic() + 30)) for r in b
                    ]
        assert {r.verdict for r in results} == {transmit.RETRY}, handler
        assert {r.code for r in results} == {"network"}


def sites_at(port: int) -> dict[str, dict[str, str]]:
    base = f"http://127.0.0.1:{port}"
    return {SITE: {"web_url": base, "api_url": base, "logs_url": base}}


def test_on_the_multiplexer_an_answer_past_the_cap_is_retried_and_redirects_are_dead():
    def answer(request: bytes) -> bytes:
        if b'"title":"moved"' in request:
            return http("302 Found", b"", b"Location: https://elsewhere.example/\r\n")
        return http("202 Accepted", b"x" * 5000)

    with server(answer) as base:
        sites = {SITE: {"web_url": base, "api_url": base, "logs_url": base}}
        limits = {"EXTRA_SITES": sites, "MAX_RESPONSE_BYTES": 1024}
        with override_settings(DATADOG_PARTNER=limits), fixed(4) as sender:
            jobs = events(2)
            jobs.append((SITE, transmit.EventJob(target(), Item(9, "event", {"title": "moved"}))))
            results = {
                r.row_ids[0]: r
                for batch in sender.run(jobs, Run(time.monotonic() + 30))
                for r in batch
            }
    assert {results[1].verdict, results[2].verdict} == {transmit.RETRY}
    assert results[9].verdict == transmit.DEAD and results[9].code == "transport_refused"


@pytest.mark.parametrize("limit", [2, 4], ids=["threads", "multiplexer"])
def test_a_request_the_transport_refuses_to_frame_is_never_sent(limit: int):
    """A header with a line break (a corrupted stored key) is refused before any byte
    goes out, the same on threads and on the multiplexer, and the key is not in the
    result."""
    with server(lambda request: http("202 Accepted")) as base:
        sites = {SITE: {"web_url": base, "api_url": base, "logs_url": base}}
        with override_settings(DATADOG_PARTNER={"EXTRA_SITES": sites}), fixed(limit) as sender:
            broken = Target(1, get_site(SITE), "k" * 16 + "\r\nX-Injected: 1")
            jobs = [(SITE, transmit.EventJob(broken, Item(n, "event", {"title": "t"})))
                    for n in (1, 2, 3)]  # fmt: skip
            results = [r for b in sender.run(jobs, Run(time.monotonic() + 30)) for r in b]
            seen = list(server.seen)  # type: ignore[attr-defined]
    assert seen == []
    assert {(r.verdict, r.code) for r in results} == {(transmit.RETRY, "network")}
    assert all("k" * 16 not in r.detail for r in results)


def test_a_poll_reads_at_most_the_answers_asked_for_and_leaves_the_others_in_their_sockets():
    answer = threading.Event()  # the server answers once every request was sent

    with server(lambda request: (answer.wait(5), http("202 Accepted"))[1]) as base:
        mux = Multiplexer()
        calls = [post(base) for _ in range(4)]
        for call in calls:
            mux.start(call.exchange)
        while not all(call.exchange.state == "reading" for call in calls):
            assert mux.poll(0.1, most=0)[0] == []  # connected and sent; nothing to read
        answer.set()
        time.sleep(0.2)  # every answer is in its socket
        first, _ = mux.poll(0.5, most=1)
        unread = [call.exchange for call in calls if call.exchange not in first]
        assert len(first) == 1 and len(unread) == 3
        for exchange in unread:
            assert exchange.conn is not None and not exchange.conn.buffer
            assert exchange.conn.sock.recv(1, socket.MSG_PEEK) == b"H"  # still the kernel's
        rest = [exchange for _ in range(3) for exchange in mux.poll(0.5, most=1)[0]]
        assert sorted(map(id, rest)) == sorted(map(id, unread))
        assert {call.answer()[0].status_code for call in calls} == {202}  # type: ignore[index]
        mux.close()


def test_a_latency_bound_sender_asks_for_more_jobs_once_every_job_has_started():
    asked: list[int] = []  # results yielded when more() was called
    results: list[transmit.Result] = []

    def more() -> list[tuple[str, transmit.Job]]:
        asked.append(len(results))
        return events(8)[4:] if len(asked) == 1 else []

    with server(lambda request: http("202 Accepted")), fixed(4) as sender:
        for batch in sender.run(events(4), Run(time.monotonic() + 60), more):
            results.extend(batch)
    assert sorted(r.row_ids[0] for r in results) == list(range(1, 9))
    assert asked[0] == 0  # the four first requests were still in flight
    assert len(asked) == 2  # asked again once the extra jobs had started: none, so it stops


def test_a_sender_that_is_not_latency_bound_never_asks_for_more():
    asked: list[int] = []

    def more() -> list[tuple[str, transmit.Job]]:
        asked.append(1)
        return events(2)

    # Two in flight, held there: the CPU-bound range (a real sender's ratio on a loaded
    # loopback may well say latency-bound).
    with server(lambda request: http("202 Accepted")), fixed(2) as sender:
        results = [r for b in sender.run(events(3), Run(time.monotonic() + 60), more) for r in b]
        assert not sender.latency_bound
    assert len(results) == 3 and asked == []


def test_an_idle_connection_whose_descriptor_is_past_1023_is_reused():
    """``select`` refuses such a descriptor; a pool of 2,048 connections has them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if max(soft, hard) < 1600:
        pytest.skip("descriptors past 1,023 need RLIMIT_NOFILE above 1,600")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1600), hard))
    try:
        with server(lambda request: http("202 Accepted")) as base:
            mux = Multiplexer()
            drive([post(base)], mux)
            (conn,) = transport.origin_of(base).idle
            high = os.dup2(conn.sock.fileno(), 1500)
            conn.sock.close()
            conn.sock = socket.socket(fileno=high)
            assert conn.alive()
            (again,) = drive([post(base)], mux)
            assert again.status_code == 202 and mux.opened == 1  # type: ignore[attr-defined]
            mux.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_answer_left_in_its_socket_by_a_poll_is_not_failed_as_a_timeout_meanwhile():
    """Bytes that came within the read timeout, left for a later poll (``most``), are read
    then: the wait for them ended when they came, not when the poll gets to them."""
    answer = threading.Event()  # the server answers once every request was sent
    reply = http("202 Accepted")
    with server(lambda request: (answer.wait(5), reply)[1], timeouts=(5.0, 0.3)) as base:
        mux = Multiplexer()
        calls = [post(base) for _ in range(3)]
        for call in calls:
            mux.start(call.exchange)
        while not all(call.exchange.state == "reading" for call in calls):
            assert mux.poll(0.1, most=0) == ([], [])
        answer.set()
        for call in calls:  # every answer is in its socket, within the read timeout
            assert call.exchange.conn is not None
            sock = call.exchange.conn.sock
            assert select.select([sock], [], [], 5)[0] == [sock]
            assert sock.recv(1, socket.MSG_PEEK) == b"H"
        statuses: list[int] = []

        def answered(arrived: list[Exchange]) -> None:
            for exchange in arrived:
                assert isinstance(exchange.tag, Call)
                got = exchange.tag.answer()
                assert got is not None
                mux.settle(exchange, keep=got[1])
                statuses.append(got[0].status_code)

        arrived, failed = mux.poll(0.5, most=1)
        assert len(arrived) == 1 and failed == []
        answered(arrived)
        time.sleep(0.6)  # past the read timeout of the two left in their sockets
        for _ in range(2):
            arrived, failed = mux.poll(0.5, most=1)
            assert failed == []
            answered(arrived)
        assert statuses == [202] * 3
        mux.close()


def limit_descriptors(monkeypatch: pytest.MonkeyPatch, soft: int) -> None:
    """The process reads ``soft`` as its descriptor limit (the real one is unchanged)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, hard))


def test_a_run_keeps_its_requests_in_flight_within_half_the_descriptor_limit(monkeypatch):
    from django_datadog_partner.delivery.run import concurrency

    limit_descriptors(monkeypatch, 1024)  # systemd's usual soft limit
    assert descriptors.socket_budget() == 896 and concurrency() == 448
    limit_descriptors(monkeypatch, resource.RLIM_INFINITY)
    assert concurrency() == 2048  # DELIVERY_CONCURRENCY's default, the pool's size
    with override_settings(DATADOG_PARTNER={"DELIVERY_CONCURRENCY": 10}):
        assert concurrency() == 10


def test_idle_connections_kept_alive_stay_within_the_other_half(monkeypatch):
    """The half is for every origin together: one that filled it leaves another none."""
    limit_descriptors(monkeypatch, 68)  # a budget of 4: 2 in flight, 2 kept idle
    with (
        server(lambda request: http("202 Accepted")) as base,
        tcp_server(answering_202) as other_port,
    ):
        other = f"http://127.0.0.1:{other_port}"
        mux = Multiplexer()
        drive([post(base) for _ in range(4)], mux)
        assert mux.opened == 4 and transport.idle_connections(base) == 2
        sites = {"other.test": {"web_url": other, "api_url": other, "logs_url": other}}
        with override_settings(DATADOG_PARTNER={"EXTRA_SITES": sites}):
            drive([post(other) for _ in range(2)], mux)
        assert transport.idle_connections(other) == 0
        assert transport.idle_connections(base) == 2
        mux.close()


def answering_202(sock: socket.socket, stop: threading.Event) -> None:
    while read_request(sock):
        sock.sendall(http("202 Accepted"))


LOW_LIMIT_WORKER = """
import resource, sys, time
import django
django.setup()
from django.test import override_settings
from django_datadog_partner.delivery import transmit
from django_datadog_partner.delivery.pacing import Sender
from django_datadog_partner.delivery.run import concurrency
from tests.test_multiplex import SITE, events

resource.setrlimit(resource.RLIMIT_NOFILE, (160, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
base = sys.argv[1]
sites = {SITE: {"web_url": base, "api_url": base, "logs_url": base}}
hogged = []
with override_settings(DATADOG_PARTNER={"EXTRA_SITES": sites}):
    limit = concurrency()
    if sys.argv[2] != "-":  # something else in the process took all but ``argv[2]`` of them
        try:
            while True:
                hogged.append(open("/dev/null"))
        except OSError:
            for _ in range(int(sys.argv[2])):
                hogged.pop().close()
    with Sender(limit, start=limit) as sender:
        run = transmit.Run(time.monotonic() + 60)
        results = [r for batch in sender.run(events(300), run) for r in batch]
print(limit, sorted({r.verdict for r in results}), len(results))
print(sorted({r.code for r in results}), any(r.site_fault for r in results))
"""


def low_limit_worker(answer: Callable[[bytes], bytes], mode: str) -> tuple[str, str]:
    """What ``LOW_LIMIT_WORKER`` printed (its verdicts, its codes) after sending 300
    requests to a loopback site answering ``answer``, in a process of its own."""
    import subprocess
    import sys

    with server(answer) as base:
        done = subprocess.run(
            [sys.executable, "-c", LOW_LIMIT_WORKER, base, mode],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
            cwd=Path(__file__).resolve().parent.parent,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    verdicts, codes = done.stdout.split("\n")[-3:-1]
    return verdicts, codes


def test_a_worker_under_a_low_descriptor_limit_sends_every_request():
    """Under a limit of 160 descriptors, a run that kept the default 2,048 requests in
    flight opened sockets until ``EMFILE``, and each request past it failed as a site
    that does not answer (a retry, and a count towards the site's breaker)."""

    def answer_late(request: bytes) -> bytes:
        time.sleep(0.05)
        return http("202 Accepted")

    verdicts, _ = low_limit_worker(answer_late, "-")
    assert verdicts == "48 ['delivered'] 300"


def test_a_worker_out_of_descriptors_waits_without_blaming_the_site():
    """Descriptors taken by something else in the process: each request that finds none
    waits (no attempt spent on our own limit), not counted as the site failing."""
    verdicts, codes = low_limit_worker(lambda request: http("202 Accepted"), "10")
    assert verdicts == "48 ['delivered', 'held'] 300"
    assert codes == "['http_202', 'no_descriptors'] False"  # no fault counted towards the breaker


def test_a_worker_with_no_descriptor_for_its_multiplexer_holds_every_request():
    """The multiplexer needs descriptors of its own (a selector, a wake-up pair): without
    them the run raised out of the batch, whose rows then waited for their lease to end."""
    verdicts, codes = low_limit_worker(lambda request: http("202 Accepted"), "0")
    assert verdicts == "48 ['held'] 300"
    assert codes == "['no_descriptors'] False"


def test_a_multiplexer_without_descriptors_says_so_and_leaves_nothing_open(monkeypatch):
    def no_pair() -> tuple[socket.socket, socket.socket]:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(socket, "socketpair", no_pair)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OutOfDescriptorsError, match="RLIMIT_NOFILE"):
        Multiplexer()
    assert len(os.listdir("/proc/self/fd")) == before  # the selector made first is closed


def test_a_multiplexer_whose_wake_up_call_cannot_be_watched_leaves_nothing_open(monkeypatch):
    def refuse(*args: object, **kwargs: object) -> None:  # epoll's max_user_watches
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(selectors.DefaultSelector, "register", refuse)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="No space"):
        Multiplexer()
    assert len(os.listdir("/proc/self/fd")) == before
