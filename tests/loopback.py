"""Raw TCP servers on 127.0.0.1 for tests of the HTTP seam against misbehaving peers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Called in its own thread for each accepted connection, with the server's stop event.
Handler = Callable[[socket.socket, threading.Event], None]


@contextmanager
def tcp_server(handle: Handler) -> Iterator[int]:
    """Serve ``handle`` on a free loopback port (yielded); every connection is closed at exit."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except OSError:
                continue
            accepted.append(conn)
            threading.Thread(target=handle, args=(conn, stop), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()
