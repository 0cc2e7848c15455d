"""Many requests in flight on one thread: the transport's connections driven by one selector.

Why: a thread per request in flight (hundreds at a 200 ms round trip) cost more CPU in
wake-ups and GIL hand-overs than the requests themselves. Here every socket is
non-blocking (connect and TLS handshake included) and one ``selectors`` loop moves bytes;
the answer is read with the transport's own framing (``transport.Answer``) over the bytes
received so far (``Replay``), retried as more arrive, so both paths read answers alike.
Connections come from, and go back to, the origin's idle list the blocking path uses: an
idle one is reused before a new one is opened, so a caller never holds more connections
than exchanges in flight. Waits are bounded as on the blocking path: the connect timeout
while connecting, the read timeout between two pieces of progress, and the call's
deadline overall.
"""

from __future__ import annotations

import contextlib
import errno
import math
import selectors
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError

from .descriptors import out_of_descriptors
from .transport import READ_SIZE, Connection, Origin, tls_context


class Incomplete(Exception):
    """The answer has not arrived whole yet: read again when more bytes come."""


class Replay(Connection):
    """The bytes an exchange received so far, read as a connection that cannot wait: a read
    past them raises ``Incomplete`` (or finds the end of the stream once the server closed).
    Whether the live connection is kept is decided here and applied by the multiplexer."""

    def __init__(self, live: Connection, ended: bool) -> None:
        super().__init__(live.origin, live.sock)
        self.buffer = bytearray(live.buffer)
        self.ended = ended
        self.keep = False

    def fill(self) -> bool:
        if self.ended:
            return False
        raise Incomplete

    def close(self) -> None:
        self.keep = False

    def reuse(self) -> None:
        self.keep = True


#: A look at the sockets that lasted this long (seconds) waited for the bytes it found.
BLOCKED = 0.0005

CONNECTING, HANDSHAKE, SENDING, READING = "connecting", "handshake", "sending", "reading"


@dataclass(eq=False)
class Exchange:
    """One request: its bytes, where they go, its waits; ``tag`` is the caller's."""

    origin: Origin
    data: bytes = field(repr=False)
    timeout: tuple[float, float]
    deadline: float
    tag: object = None
    conn: Connection | None = field(default=None, repr=False)
    state: str = CONNECTING
    sent: int = 0
    ended: bool = False
    wait_until: float = 0.0  # the current wait's end: connect or read timeout
    started: float = field(default_factory=time.monotonic)
    #: Seconds from the start to the last look that found no answer yet (0: not known).
    answered_after: float = 0.0

    def replay(self) -> Replay:
        assert self.conn is not None
        return Replay(self.conn, self.ended)


class Multiplexer:
    """Exchanges in flight on one selector. ``start`` one, then ``poll``: it returns the
    exchanges with new bytes (read them through ``replay()``; ``settle`` them once read
    whole) and those that failed, with the exception the blocking path would raise."""

    def __init__(self) -> None:
        self._selector, self._waker = _selector_and_waker()
        self._exchanges: set[Exchange] = set()
        self._addresses: dict[tuple[str, int], list[tuple[int, tuple[object, ...]]]] = {}
        self._failed: list[tuple[Exchange, BaseException]] = []
        self._ready: list[Exchange] = []  # bytes arrived while starting
        self._unread: deque[Exchange] = deque()  # found ready, not read yet (``poll``)
        #: No exchange's wait ends before this (a lower bound, exact after ``_expire``):
        #: a look at every exchange's limits each poll cost O(in flight) per answer.
        self._soonest = math.inf
        #: Connections this multiplexer opened (the others were idle ones reused).
        self.opened = 0
        #: When the selector last said which sockets were ready: bytes found at the next
        #: look arrived after it (a round trip's lower bound, however busy the thread was;
        #: when the look itself waited, the bytes came as it ended).
        self.last_look = time.monotonic()

    def __len__(self) -> int:
        return len(self._exchanges)

    def close(self) -> None:
        for exchange in list(self._exchanges):
            self.settle(exchange, keep=False)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._waker.close()
        self._selector.close()

    def wake(self) -> None:
        """End a ``poll`` in progress (callable from any thread)."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._waker.send(b"\0")

    def start(self, exchange: Exchange) -> None:
        self._exchanges.add(exchange)
        now = time.monotonic()
        conn = exchange.origin.take_idle()
        if conn is not None:
            exchange.conn, exchange.state = conn, SENDING
            conn.sock.setblocking(False)
            self._wait(exchange, selectors.EVENT_WRITE, now + exchange.timeout[1])
            if self._step(exchange):  # answered at once: the selector will not say so again
                self._ready.append(exchange)
            return
        try:
            sock = self._connect(exchange.origin)
        except OSError as exc:
            self._fail(exchange, out_of_descriptors(exc) or _unreachable(exc))
            return
        self.opened += 1
        exchange.conn = Connection(exchange.origin, sock)
        self._wait(exchange, selectors.EVENT_WRITE, now + exchange.timeout[0])

    def poll(
        self, timeout: float, most: int | None = None
    ) -> tuple[list[Exchange], list[tuple[Exchange, BaseException]]]:
        """Wait up to ``timeout`` seconds for progress: (exchanges with new bytes, failed).

        With ``most``, at most that many ready sockets are read (and those whose answer
        came as their request was sent, at once on a fast server); the other ones keep
        their bytes until the next polls, which read them before looking again: a caller
        that records each poll's answers before the next holds about ``most`` answers
        read and not yet recorded, whenever it stops.
        """
        arrived, self._ready = self._ready, []
        if not self._failed and not arrived and not self._unread:
            before = time.monotonic()
            wait = max(0.0, min(timeout, self._soonest - before))
            ready = self._selector.select(wait)
            seen, self.last_look = self.last_look, time.monotonic()
            if self.last_look - before >= BLOCKED:  # nothing was ready when it began
                seen = self.last_look
            for key, _ in ready:
                exchange = key.data
                if exchange is None:  # woken
                    with contextlib.suppress(BlockingIOError):
                        key.fileobj.recv(4096)  # type: ignore[union-attr]
                    continue
                if exchange.state == READING:  # its bytes are read below, or later
                    self._unread.append(exchange)
                elif not (self._step(exchange) and exchange.state == READING):
                    continue  # connected, handshaken or sent: no answer yet
                else:
                    arrived.append(exchange)  # sent, and its answer read at once
                if not exchange.answered_after:
                    exchange.answered_after = max(0.0, seen - exchange.started)
        for _ in range(len(self._unread) if most is None else min(most, len(self._unread))):
            exchange = self._unread.popleft()
            if exchange in self._exchanges and self._step(exchange):
                arrived.append(exchange)
            if exchange in self._exchanges:  # waits again (``_expire`` left it out)
                self._soonest = min(self._soonest, self._limit(exchange))
        now = time.monotonic()
        if now >= self._soonest:
            self._expire(now)
        failed, self._failed = self._failed, []
        return [e for e in arrived if e in self._exchanges], failed

    def settle(self, exchange: Exchange, *, keep: bool) -> None:
        """Done with ``exchange``: its connection goes back to the idle list or is closed."""
        self._exchanges.discard(exchange)
        conn, exchange.conn = exchange.conn, None
        if conn is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        if keep and not exchange.ended:
            conn.buffer.clear()
            conn.reuse()
        else:
            conn.close()

    def _connect(self, origin: Origin) -> socket.socket:
        where = (origin.host, origin.port)
        if where not in self._addresses:  # resolved once per multiplexer (per run)
            self._addresses[where] = [
                (family, address)
                for family, _, _, _, address in socket.getaddrinfo(*where, type=socket.SOCK_STREAM)
            ]
        family, address = self._addresses[where][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            raise OSError(code, "connect failed")
        return sock

    def _wait(self, exchange: Exchange, events: int, until: float) -> None:
        assert exchange.conn is not None
        exchange.wait_until = until
        self._soonest = min(self._soonest, until, exchange.deadline)
        sock = exchange.conn.sock
        if self._selector.get_map().get(sock) is None:  # a KeyError costs the socket's repr
            self._selector.register(sock, events, exchange)
        else:
            self._selector.modify(sock, events, exchange)

    def _limit(self, exchange: Exchange) -> float:
        return min(exchange.wait_until, exchange.deadline)

    def _expire(self, now: float) -> None:
        """Fail the exchanges whose wait has ended; ``_soonest`` becomes exact again. (Once
        set, a wait only moves later, except through ``_wait``, which lowers ``_soonest``.)
        Those in ``_unread`` are left out: their bytes came while they waited, and they are
        read (and wait again) at the next polls."""
        unread = set(self._unread)
        waiting = [e for e in self._exchanges if e not in unread]
        for exchange in [e for e in waiting if self._limit(e) <= now]:
            if exchange.state in (CONNECTING, HANDSHAKE):
                self._fail(exchange, ConnectTimeoutError("Connecting timed out (TimeoutError)."))
            else:
                self._fail(exchange, TimeoutError("The call's deadline has passed."))
        self._soonest = min((self._limit(e) for e in waiting if e in self._exchanges),
                            default=math.inf)  # fmt: skip

    def _fail(self, exchange: Exchange, error: BaseException) -> None:
        self.settle(exchange, keep=False)
        self._failed.append((exchange, error))

    def _step(self, exchange: Exchange) -> bool:
        """Move ``exchange`` on as far as its socket allows; whether bytes arrived."""
        try:
            if exchange.state == CONNECTING:
                self._connected(exchange)
            if exchange.state == HANDSHAKE:
                self._handshake(exchange)
            if exchange.state == SENDING:
                self._send(exchange)
            if exchange.state == READING:
                return self._receive(exchange)
        except ssl.SSLError as exc:
            if exchange.state == HANDSHAKE:
                self._fail(exchange, exc)  # classified by the seam (a refused certificate)
            else:
                self._fail(exchange, ProtocolError("Connection aborted.", exc))
        except ConnectionError as exc:
            if exchange.state == CONNECTING:
                self._fail(exchange, _unreachable(exc))
            else:
                self._fail(exchange, ProtocolError("Connection aborted.", exc))
        except OSError as exc:
            self._fail(exchange, ProtocolError("Connection aborted.", exc))
        return False

    def _connected(self, exchange: Exchange) -> None:
        assert exchange.conn is not None
        sock = exchange.conn.sock
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise ConnectionRefusedError(code, "connect failed")
        if not exchange.origin.tls:
            exchange.state = SENDING
            return
        self._selector.unregister(sock)
        exchange.conn.sock = tls_context().wrap_socket(
            sock, server_hostname=exchange.origin.host, do_handshake_on_connect=False
        )
        exchange.state = HANDSHAKE
        self._wait(exchange, selectors.EVENT_WRITE, exchange.wait_until)

    def _handshake(self, exchange: Exchange) -> None:
        assert exchange.conn is not None
        sock = exchange.conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._wait(exchange, selectors.EVENT_READ, exchange.wait_until)
            return
        except ssl.SSLWantWriteError:
            self._wait(exchange, selectors.EVENT_WRITE, exchange.wait_until)
            return
        exchange.state = SENDING
        self._wait(exchange, selectors.EVENT_WRITE, time.monotonic() + exchange.timeout[1])

    def _send(self, exchange: Exchange) -> None:
        assert exchange.conn is not None
        sock = exchange.conn.sock
        while exchange.sent < len(exchange.data):
            try:
                exchange.sent += sock.send(exchange.data[exchange.sent :])
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
        exchange.state = READING
        self._wait(exchange, selectors.EVENT_READ, time.monotonic() + exchange.timeout[1])

    def _receive(self, exchange: Exchange) -> bool:
        assert exchange.conn is not None
        conn = exchange.conn
        arrived = False
        while True:
            try:
                chunk = conn.sock.recv(READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError):
                break
            if not chunk:
                exchange.ended = True
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(conn.sock)
                return True
            conn.buffer += chunk
            arrived = True
        if arrived:
            exchange.wait_until = time.monotonic() + exchange.timeout[1]
        return arrived


def _selector_and_waker() -> tuple[selectors.BaseSelector, socket.socket]:
    """A selector, and the writing end of the wake-up pair it watches (another thread's
    way to end a poll). Both take descriptors: when the process has none left, this is
    ``OutOfDescriptorsError`` and nothing stays open."""
    opened: list[Any] = []
    try:
        selector = selectors.DefaultSelector()
        opened.append(selector)
        pair = socket.socketpair()
        opened += pair
        waker, woken = pair
        waker.setblocking(False)
        woken.setblocking(False)
        selector.register(woken, selectors.EVENT_READ, None)
    except OSError as exc:
        for each in opened:
            each.close()
        error = out_of_descriptors(exc)
        if error is None:
            raise
        raise error from exc
    return selector, waker


def _unreachable(exc: BaseException) -> NewConnectionError:
    """What the blocking path raises when connecting fails (nothing was sent)."""
    return NewConnectionError(None, f"Could not connect ({type(exc).__name__}).")  # type: ignore[arg-type]
