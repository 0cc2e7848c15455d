"""The HTTP seam's transport: a minimal keep-alive HTTP/1.1 client on raw sockets, answers
handed back as ``requests.Response`` objects (what every caller of the seam reads).

Why not urllib3: its ``urlopen`` (with ``http.client`` and ``email.feedparser`` parsing
the headers) was three quarters of the seam's CPU and most of a delivery worker's; the
requests the seam sends are few shapes (a POST or GET with a handful of headers, an answer
of a few bytes), so one request is one ``sendall`` of prebuilt bytes and the answer one or
two ``recv``. The guarantees stay the seam's: TLS verified against certifi's bundle
(``ssl`` default context: CERT_REQUIRED, hostname checked), no retries, no redirects
(3xx answers go back to the seam, which refuses them), no proxies, every socket wait cut
to the call's deadline (connect + read timeout, counted by the seam), header lines and
counts capped, the body streamed so the seam caps it (decoded gzip/deflate included,
decompressed a bounded piece at a time), header injection refused. Failures raise
``Failure`` wrapping the urllib3 exception a pool would have raised (nothing sent:
``NewConnectionError``/``ConnectTimeoutError``; the answer lost: ``ProtocolError``,
``TimeoutError``), so the seam's one reading of them stays. A connection goes back to its
origin's idle list only after an answer was read whole; one found readable while idle (the
server hung up) is dropped before use. While a mock patches ``requests``' transport
(``requests_patched()``) the seam sends through ``requests`` instead, so ``responses`` and
the test kit keep answering. Idle lists stay within half the process's socket budget
(``descriptors``). The module is longer than most: its one concern is HTTP/1.1 framing
(both directions), which cannot be split without splitting the connection.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import os
import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import requests
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError

from .descriptors import POOL_SIZE, out_of_descriptors, socket_budget

#: Longest status or header line, most header lines, longest chunk-size line of an answer.
MAX_LINE, MAX_HEADERS = 65536, 100
READ_SIZE = 65536

_REAL_SEND = HTTPAdapter.send
_REAL_GET_ADAPTER = requests.Session.get_adapter
_lock = threading.Lock()
_origins: dict[str, Origin] = {}
_tls: dict[str, ssl.SSLContext] = {}
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_BAD_FIELD = re.compile(r"[\r\n\x00]")


class Failure(Exception):
    """Carries the transport's exception to the seam, which reads it and raises its own."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


@dataclass(frozen=True)
class Body:
    """A request body: bytes, or form fields (encoded here); ``params`` go in the query."""

    data: Any = None
    params: dict[str, str] | None = None


def requests_patched() -> bool:
    """Whether a mock (``responses``, ``requests-mock``) has replaced ``requests``'
    transport: then calls must go through ``requests`` for it to see them."""
    return HTTPAdapter.send is not _REAL_SEND or requests.Session.get_adapter is not (
        _REAL_GET_ADAPTER
    )


def tls_context() -> ssl.SSLContext:
    """The one client context: certifi's bundle, certificate and hostname verified."""
    context = _tls.get("context")
    if context is None:
        context = ssl.create_default_context(cafile=certifi.where())
        _tls["context"] = context
    return context


class Origin:
    """``scheme://host[:port]``: where to connect, the Host header, its idle connections."""

    def __init__(self, origin: str) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("Only http and https URLs with a host can be sent to.")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.idle: list[Connection] = []

    def checkout(self, connect_timeout: float, deadline: float) -> Connection:
        conn = self.take_idle()
        return conn if conn is not None else Connection.open(self, connect_timeout, deadline)

    def take_idle(self) -> Connection | None:
        """An idle connection still usable, if one is kept."""
        while self.idle:
            try:
                conn = self.idle.pop()
            except IndexError:  # another thread took the last one
                break
            if conn.alive():
                return conn
            conn.close()
        return None

    def checkin(self, conn: Connection) -> None:
        """Keep ``conn`` alive, unless this origin keeps ``POOL_SIZE`` already or every
        origin together keeps their half of ``socket_budget()``."""
        if len(self.idle) < POOL_SIZE and _idle_total() < socket_budget() // 2:
            self.idle.append(conn)
        else:
            conn.close()


def origin_of(origin: str) -> Origin:
    found = _origins.get(origin)
    if found is None:
        with _lock:
            found = _origins.setdefault(origin, Origin(origin))
    return found


def _idle_total() -> int:
    return sum(len(origin.idle) for origin in list(_origins.values()))


def idle_connections(origin: str) -> int:
    """Connections kept alive to ``origin`` right now (tests, diagnostics)."""
    found = _origins.get(origin)
    return len(found.idle) if found is not None else 0


def reset() -> None:
    """Close the kept-alive connections (tests)."""
    with _lock:
        _close_idle()


def _close_idle() -> None:
    origins = list(_origins.values())
    _origins.clear()
    for origin in origins:
        while origin.idle:
            origin.idle.pop().close()


def _forget_after_fork() -> None:
    """The parent's connections are not the child's to use: the child closes its copies
    of their descriptors (the parent's stay open), which it would otherwise hold uncounted
    until the collector found them (a connection and its origin refer to each other). The
    lock is made anew: a thread of the parent may have held it at the fork, and the child
    has no such thread to release it."""
    global _lock
    _lock = threading.Lock()
    _close_idle()


os.register_at_fork(after_in_child=_forget_after_fork)


def _left(deadline: float, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("The call's deadline has passed.")
    return min(timeout, left)


class Connection:
    """One socket and its read buffer; every wait is cut to the call's deadline."""

    def __init__(self, origin: Origin, sock: socket.socket) -> None:
        self.origin, self.sock = origin, sock
        self.buffer = bytearray()
        self.read_timeout, self.deadline = 0.0, 0.0

    @classmethod
    def open(cls, origin: Origin, connect_timeout: float, deadline: float) -> Connection:
        try:
            sock = socket.create_connection(
                (origin.host, origin.port), timeout=_left(deadline, connect_timeout)
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(f"Connecting timed out ({type(exc).__name__}).") from exc
        except OSError as exc:
            unopened = f"Could not connect ({type(exc).__name__})."
            raise out_of_descriptors(exc) or NewConnectionError(None, unopened) from exc  # type: ignore[arg-type]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if origin.tls:
            try:
                sock = tls_context().wrap_socket(sock, server_hostname=origin.host)
            except TimeoutError as exc:
                sock.close()
                raise ConnectTimeoutError("The TLS handshake timed out.") from exc
            except BaseException:
                sock.close()
                raise
        return cls(origin, sock)

    def alive(self) -> bool:
        """An idle connection is usable while nothing (data, a hang-up) is waiting on it.
        (``poll``, not ``select``: ``select`` refuses a descriptor past 1,023, and a pool
        of 2,048 connections has them, which were then closed instead of reused.)"""
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            waiting = poller.poll(0)
        except (OSError, ValueError):
            return False
        return not waiting and not self.buffer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def reuse(self) -> None:
        """Back to the origin's idle list (its answer was read whole)."""
        self.origin.checkin(self)

    @sensitive_variables()  # the request's bytes: headers and body
    def send(self, data: bytes, write_timeout: float) -> None:
        self.sock.settimeout(_left(self.deadline, write_timeout))
        self.sock.sendall(data)

    def fill(self) -> bool:
        """Read more into the buffer; False at the end of the stream."""
        self.sock.settimeout(_left(self.deadline, self.read_timeout))
        chunk = self.sock.recv(READ_SIZE)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > MAX_LINE:
                raise ProtocolError("An answer line is too long.")
            if not self.fill():
                raise ProtocolError("The connection closed inside the answer's head.")
        if end > MAX_LINE:
            raise ProtocolError("An answer line is too long.")
        found = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return found

    def take(self, most: int) -> bytes:
        """Up to ``most`` bytes (at least one; b"" at the end of the stream)."""
        if not self.buffer and not self.fill():
            return b""
        found = bytes(self.buffer[:most])
        del self.buffer[:most]
        return found


@sensitive_variables()  # headers and body hold the credentials
def send(
    method: str,
    url: str,
    headers: dict[str, str],
    body: Body,
    timeout: tuple[float, float],
) -> requests.Response:
    """One request; the answer's head is read, its body is left to stream.

    Raises ``Failure`` (wrapping the exception) when no answer came."""
    deadline = time.monotonic() + timeout[0] + timeout[1]
    try:
        url, origin, request = prepare(method, url, headers, body)
        conn = origin.checkout(timeout[0], deadline)
        conn.read_timeout, conn.deadline = timeout[1], deadline
        try:
            conn.send(request, timeout[1])
            raw = Answer.read(conn, method)
        except (ConnectionError, ssl.SSLError) as exc:
            conn.close()
            raise ProtocolError("Connection aborted.", exc) from exc
        except BaseException:
            conn.close()
            raise
    except Exception as exc:  # read by the seam; its frames hold the request
        raise Failure(exc) from None
    return _response(method, url, raw)


@sensitive_variables()  # headers and body hold the credentials
def prepare(
    method: str, url: str, headers: dict[str, str], body: Body
) -> tuple[str, Origin, bytes]:
    """(the URL with its query, where it goes, the request's bytes: head and body)."""
    data = body.data
    if isinstance(data, Mapping | list | tuple):
        data = urlencode(data, doseq=True).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    if body.params:
        url += ("&" if "?" in url else "?") + urlencode(body.params, doseq=True)
    cut = url.find("/", url.find("://") + 3)
    base, target = (url, "/") if cut < 0 else (url[:cut], url[cut:])
    origin = origin_of(base)
    head = _head(method, target, origin.host_header, headers, data)
    return url, origin, head + data if data else head


def _head(method: str, target: str, host: str, headers: Mapping[str, str], data: Any) -> bytes:
    if _BAD_TARGET.search(target) or _BAD_TARGET.search(method):
        raise ValueError("A request target or method may not hold spaces or control bytes.")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if _BAD_FIELD.search(name) or _BAD_FIELD.search(value) or ":" in name:
            raise ValueError("A header may not hold line breaks.")  # never its value
        lines.append(f"{name}: {value}")
    if data:
        lines.append(f"Content-Length: {len(data)}")
    elif method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


class Answer:
    """The answer of one request: status, headers (names as sent, repeats joined), and its
    body as a stream (``stream()``), read within the call's deadline."""

    def __init__(self, conn: Connection, status: int, reason: str, headers: dict[str, str],
                 length: int | None, chunked: bool, keep: bool) -> None:  # fmt: skip
        self._conn: Connection | None = conn
        self.status, self.reason, self.headers = status, reason, headers
        self._length, self._chunked, self._keep = length, chunked, keep
        self._done = False

    @classmethod
    def read(cls, conn: Connection, method: str) -> Answer:
        while True:
            status_line = conn.line()
            if not status_line:
                raise ProtocolError("Connection aborted.", "no answer")
            version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
                raise ProtocolError("Connection aborted.", "not an HTTP/1.x answer")
            headers = cls._headers(conn)
            status = int(code)
            if status >= 200 or status == 101:
                break  # 1xx interim answers are skipped
        lowered = {name.lower(): value for name, value in headers.items()}
        keep = version == "HTTP/1.1" and "close" not in lowered.get("connection", "").lower()
        chunked = "chunked" in lowered.get("transfer-encoding", "").lower()
        length: int | None = None
        if method == "HEAD" or status in (204, 304) or status < 200:
            length, chunked = 0, False
        elif not chunked and "content-length" in lowered:
            value = lowered["content-length"].split(",")[0].strip()
            if not value.isdigit():
                raise ProtocolError("Connection aborted.", "bad Content-Length")
            length = int(value)
        elif not chunked:
            keep = False  # the body ends when the server closes
        return cls(conn, status, reason, headers, length, chunked, keep)

    @staticmethod
    def _headers(conn: Connection) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = conn.line()
            if line in (b"\r\n", b"\n"):
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip():
                raise ProtocolError("Connection aborted.", "malformed header line")
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        raise ProtocolError("Connection aborted.", "too many header lines")

    def stream(self, amount: int = READ_SIZE, decode_content: bool = True) -> Iterator[bytes]:
        """The body in pieces of at most ``amount`` bytes (decoded: gzip, deflate)."""
        decoder = _decoder(self.headers) if decode_content else None
        for piece in self._pieces(amount):
            if decoder is None:
                yield piece
                continue
            try:
                while piece:
                    out = decoder.decompress(piece, amount)
                    piece = decoder.unconsumed_tail
                    if out:
                        yield out
            except zlib.error as exc:
                raise ProtocolError("The answer's body could not be decoded.") from exc
        if decoder is not None and (rest := decoder.flush()):
            yield rest

    def _pieces(self, amount: int) -> Iterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        if self._chunked:
            yield from self._chunks(conn, amount)
        elif self._length is None:
            while piece := conn.take(amount):
                yield piece
        else:
            left = self._length
            while left:
                piece = conn.take(min(amount, left))
                if not piece:
                    raise ProtocolError("The connection closed inside the answer's body.")
                left -= len(piece)
                yield piece
        self._done = True

    def _chunks(self, conn: Connection, amount: int) -> Iterator[bytes]:
        while True:
            size_text = conn.line().split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError("A chunk size is not readable.") from None
            if size == 0:
                while conn.line() not in (b"\r\n", b"\n"):  # trailers, dropped
                    pass
                return
            while size:
                piece = conn.take(min(amount, size))
                if not piece:
                    raise ProtocolError("The connection closed inside a chunk.")
                size -= len(piece)
                yield piece
            conn.line()

    def release_conn(self) -> None:
        """Back to the idle list once read whole (and the server keeps it open)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._keep and self._done and not conn.buffer:
            conn.reuse()
        else:
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _decoder(headers: dict[str, str]) -> Any:
    encoding = next((v for k, v in headers.items() if k.lower() == "content-encoding"), "")
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None


def response_of(method: str, url: str, conn: Connection) -> requests.Response:
    """The answer on ``conn`` (its head read, its body left to stream) as a response."""
    return _response(method, url, Answer.read(conn, method))


def _response(method: str, url: str, raw: Answer) -> requests.Response:
    """What ``requests``' adapter builds from an answer, less its cookie jar work."""
    response = requests.Response()
    response.status_code = raw.status
    response.headers = CaseInsensitiveDict(raw.headers)
    response.encoding = get_encoding_from_headers(response.headers)
    response.raw = raw
    response.reason = raw.reason or ""
    response.url = url
    sent = requests.PreparedRequest()
    sent.method, sent.url = method, url
    response.request = sent
    return response


def dumps(value: Any) -> bytes:
    """A JSON body as ``requests`` encodes one (NaN refused)."""
    return jsonlib.dumps(value, allow_nan=False).encode()
