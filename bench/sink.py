"""The bench's stand-in for Datadog's intake: a raw asyncio protocol answering 202.

One process, one event loop, keep-alive, no HTTP framework: parsing a request is a
``find`` and a ``Content-Length``, so the sink answers many times faster than the
workers it measures (``python -m bench.capacity`` prints by how much). A path starting
with ``/d<ms>/`` is answered after that many milliseconds (a distant Datadog), without
blocking the loop. The sink counts requests, connections, requests in flight and every
outbox id it receives (``outbox_id:<n>`` in an event's text, ``"outbox_id": <n>`` in a log
entry; gzip bodies included), so a bench can tell lost rows and duplicates; ``GET /_stats``
returns those counts as JSON (``?ids=1`` adds the ids received), ``POST /_reset`` clears
them. After ``POST /_reset?trace=1`` it also keeps, per outbox id, when each request
carrying it arrived and when its answer was written (``GET /_trace``), so a bench can
tell which copies of a duplicated row crossed a moment such as a SIGKILL.

Run as ``python -m bench.sink``; it prints its port, then serves until terminated.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import time
from collections import Counter
from typing import Any

RESPONSE = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
HEADERS_END = b"\r\n\r\n"
LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
GZIP = re.compile(rb"\r\ncontent-encoding:\s*gzip", re.IGNORECASE)
DELAY = re.compile(rb"^/d(\d+)(/|$)")
# An event's ``outbox_id:<n>`` line, a log entry's ``"outbox_id": <n>`` attribute.
OUTBOX_ID = re.compile(rb'outbox_id"?\s*:\s*(\d+)')
METRIC = re.compile(rb'"metric"\s*:')


class Stats:
    """What arrived since the last reset."""

    def __init__(self) -> None:
        self.open = 0
        self.reset()

    def reset(self, trace: bool = False) -> None:
        # Per outbox id, [arrived, answered or None] for each request carrying it.
        self.trace: dict[int, list[list[float | None]]] | None = {} if trace else None
        self.requests = 0
        self.by_path: Counter[str] = Counter()
        self.items = 0
        self.ids: Counter[int] = Counter()
        self.connections = 0  # opened since the reset
        self.max_open = self.open
        self.in_flight = 0
        self.max_in_flight = 0
        self.first_at: float | None = None
        self.last_at: float | None = None

    def record(self, path: str, body: bytes, gzipped: bool) -> list[list[float | None]]:
        """Count one request; its trace entries (empty unless tracing), to stamp when
        it is answered."""
        self.requests += 1
        self.by_path[path] += 1
        if gzipped:
            body = gzip.decompress(body)
        ids = [int(found) for found in OUTBOX_ID.findall(body)]
        self.ids.update(ids)
        self.items += len(ids) if ids else max(1, len(METRIC.findall(body)))
        self.last_at = time.time()
        self.first_at = self.first_at or self.last_at
        if self.trace is None:
            return []
        entries: list[list[float | None]] = []
        for found in ids:
            entry: list[float | None] = [self.last_at, None]
            self.trace.setdefault(found, []).append(entry)
            entries.append(entry)
        return entries

    def as_dict(self, with_ids: bool) -> dict[str, Any]:
        counts = {
            "requests": self.requests,
            "by_path": dict(self.by_path),
            "items": self.items,
            "unique": len(self.ids),
            "duplicates": sum(self.ids.values()) - len(self.ids),
            "connections": self.connections,
            "open": self.open,
            "max_open": self.max_open,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }
        if with_ids:
            counts["ids"] = sorted(self.ids)
        return counts


STATS = Stats()


class Intake(asyncio.Protocol):
    """One client connection: requests are answered in order, each after its delay."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = bytearray()
        self.loop = asyncio.get_running_loop()
        STATS.connections += 1
        STATS.open += 1
        STATS.max_open = max(STATS.max_open, STATS.open)

    def connection_lost(self, exc: Exception | None) -> None:
        STATS.open -= 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(HEADERS_END)) >= 0:
            head = bytes(self.buffer[:end])
            found = LENGTH.search(head)
            total = end + 4 + (int(found.group(1)) if found else 0)
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self.handle(head, body)

    def handle(self, head: bytes, body: bytes) -> None:
        target = head.split(b" ", 2)[1]
        path, _, query = target.partition(b"?")
        if path == b"/_stats":
            self.reply(json.dumps(STATS.as_dict(b"ids=1" in query)).encode(), b"200 OK")
            return
        if path == b"/_trace":
            self.reply(json.dumps(STATS.trace or {}).encode(), b"200 OK")
            return
        if path == b"/_reset":
            STATS.reset(trace=b"trace=1" in query)
            self.reply(b"{}", b"200 OK")
            return
        delayed = DELAY.match(path)
        STATS.in_flight += 1
        STATS.max_in_flight = max(STATS.max_in_flight, STATS.in_flight)
        entries = STATS.record(DELAY.sub(b"/", path).decode(), body, GZIP.search(head) is not None)
        if delayed and int(delayed.group(1)):
            self.loop.call_later(int(delayed.group(1)) / 1000, self.accepted, entries)
        else:
            self.accepted(entries)

    def accepted(self, entries: list[list[float | None]]) -> None:
        STATS.in_flight -= 1
        if not self.transport.is_closing():
            self.transport.write(RESPONSE)
            answered = time.time()
            for entry in entries:
                entry[1] = answered

    def reply(self, body: bytes, status: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )


async def serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Intake, "127.0.0.1", 0, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve())
