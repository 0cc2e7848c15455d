"""One deadline per call, enforced at the socket.

Socket timeouts bound each read, so an answer trickling in a byte at a time could hold a
call for many times ``HTTP_TIMEOUT``. The HTTP seam sets the call's deadline in
``deadline_of_call``; the connection classes here cut every socket write and read of the
call (status line, headers, body) to the time left, and fail once it has passed.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from contextvars import ContextVar
from typing import Any

from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

#: ``time.monotonic()`` by which the current thread's call must be over (None: no call).
deadline_of_call: ContextVar[float | None] = ContextVar("datadog_partner_deadline", default=None)


def _wait_for(timeout: float | None) -> float | None:
    """The socket timeout for one read or write: ``timeout``, cut to the time left."""
    deadline = deadline_of_call.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("The call's deadline has passed.")
    return left if timeout is None else min(timeout, left)


class _DeadlineReader(io.RawIOBase):
    """The socket stream of one answer; every read waits at most until the deadline."""

    def __init__(self, stream: io.BufferedReader, sock: socket.socket) -> None:
        super().__init__()
        self._stream = stream  # owns the socket reference; closed with this reader
        self._sock = sock
        self._read_timeout = sock.gettimeout()

    def readable(self) -> bool:
        return True

    @sensitive_variables()  # the answer's bytes
    def readinto(self, buffer: Any) -> int | None:
        wait = _wait_for(self._read_timeout)
        if self._sock.gettimeout() != wait:
            self._sock.settimeout(wait)
        return self._stream.raw.readinto(buffer)

    def close(self) -> None:
        self._stream.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """An answer read within the call's deadline (status line and headers included)."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        if deadline_of_call.get() is not None:
            self.fp = io.BufferedReader(_DeadlineReader(self.fp, sock))


class _DeadlineConnectionMixin:
    """Connection behaviour shared by HTTP and HTTPS: deadline-bound writes and reads."""

    response_class: type[http.client.HTTPResponse] = _DeadlineResponse
    sock: socket.socket | None

    @sensitive_variables()  # the request's bytes: headers and body
    def send(self, data: Any) -> None:
        if self.sock is not None:
            self.sock.settimeout(_wait_for(self.sock.gettimeout()))
        super().send(data)  # type: ignore[misc]


class _DeadlineHTTPConnection(_DeadlineConnectionMixin, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineConnectionMixin, HTTPSConnection):
    pass


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose pools make deadline-bound connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _DeadlineHTTPPool,
            "https": _DeadlineHTTPSPool,
        }
