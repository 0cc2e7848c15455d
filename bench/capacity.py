"""The sink's own capacity: requests/s answered to the least costly client there is.

``python -m bench.capacity URL SECONDS`` opens ``CONNECTIONS`` keep-alive connections
from one asyncio loop, each sending a pre-built 500-byte event the moment the previous
answer is complete (no HTTP parsing: answers have a fixed length), and prints the rate.
Client and sink share the two cores, as the workers and the sink do in the benches.
"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import urlsplit

from bench.sink import RESPONSE

CONNECTIONS = 8
BODY = b'{"title":"Order 1 updated","text":"' + b"x" * 420 + b'","tags":["outbox_id:0"]}'


def request(host: str, port: int) -> bytes:
    return (
        f"POST /api/v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nDD-API-KEY: capacity\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


class Client(asyncio.Protocol):
    def __init__(self, payload: bytes, done: list[int]) -> None:
        self.payload, self.done, self.pending = payload, done, 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.pending += len(data)
        while self.pending >= len(RESPONSE):
            self.pending -= len(RESPONSE)
            self.done[0] += 1
            self.transport.write(self.payload)


async def measure(url: str, seconds: float) -> float:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    done = [0]
    payload = request(host, port)
    transports = []
    for _ in range(CONNECTIONS):
        transport, _protocol = await loop.create_connection(
            lambda: Client(payload, done), host, port
        )
        transports.append(transport)
    await asyncio.sleep(min(0.2, seconds / 5))  # warm-up
    start_count, start = done[0], time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (done[0] - start_count) / (time.perf_counter() - start)
    for transport in transports:
        transport.close()
    return rate


if __name__ == "__main__":
    print(f"{asyncio.run(measure(sys.argv[1], float(sys.argv[2]))):.0f}")
