"""Starting the sink process, reading its counters and measuring its capacity."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: Round trips the latency benches add, in milliseconds (each is a site of its own).
LATENCIES = (0, 50, 200)


def domain(latency_ms: int) -> str:
    """The bench site whose requests the sink answers after ``latency_ms``."""
    return f"sink{latency_ms}.bench"


def sites(url: str) -> dict[str, dict[str, str]]:
    """``EXTRA_SITES`` for every latency: one sink, a path prefix per delay."""
    sites = {}
    for latency in LATENCIES:
        base = f"{url}/d{latency}" if latency else url
        sites[domain(latency)] = {"web_url": base, "api_url": base, "logs_url": base}
    return sites


@dataclass
class Sink:
    """The sink as a bench process sees it (``process`` only where it was started)."""

    url: str
    process: subprocess.Popen[str] | None = None

    @classmethod
    def start(cls) -> Sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.sink"], stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        return cls(f"http://127.0.0.1:{int(process.stdout.readline())}", process)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        self.process.wait(timeout=10)

    def stats(self, ids: bool = False) -> dict[str, Any]:
        return json.loads(self._call("GET", "/_stats?ids=1" if ids else "/_stats"))

    def reset(self, trace: bool = False) -> None:
        """Clear the counts; with ``trace``, keep per-id arrival and answer times."""
        self._call("POST", "/_reset?trace=1" if trace else "/_reset")

    def trace(self) -> dict[int, list[tuple[float, float | None]]]:
        """Per outbox id, (arrived, answered or None) of each request that carried it."""
        found = json.loads(self._call("GET", "/_trace"))
        return {int(key): [tuple(entry) for entry in value] for key, value in found.items()}

    def _call(self, method: str, path: str) -> bytes:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            conn.request(method, path, body=b"" if method == "POST" else None)
            return conn.getresponse().read()
        finally:
            conn.close()


def capacity(url: str, seconds: float) -> float:
    """Requests/s the sink answers to ``bench.capacity``'s minimal client."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.capacity", url, str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())
