"""``make demo``: the example project starts, serves the sandbox tile and stops cleanly."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "example_project" / "demo.py"
MANAGE = ROOT / "example_project" / "manage.py"

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATADOG_", "DDP_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(PORT=str(port), DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    return env


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def read_until(process: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    """The output up to the line holding ``marker`` (the demo prints its URLs when ready)."""
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if marker in line:
                return "".join(seen)
    raise AssertionError(f"{marker!r} never printed:\n" + "".join(seen))


def test_demo_starts_serves_the_tile_and_stops_both_processes(tmp_path: Path) -> None:
    port = free_port()
    env = demo_env(tmp_path, port)
    demo = subprocess.Popen(
        [sys.executable, str(DEMO)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        printed = read_until(demo, "Admin:")
        assert f"Datadog sandbox tile:   http://127.0.0.1:{port}/sandbox/" in printed
        assert "alice / alice-demo" in printed
        tile = get(f"http://127.0.0.1:{port}/sandbox/")
        assert "Connect Accounts" in tile
        onboarding = f"http://127.0.0.1:{port}/datadog/connect/?domain=sandbox.localhost"
        assert onboarding in tile.replace("&amp;", "&")
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0, output
    assert "Q Cluster" in output
    assert "has stopped" in output
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/sandbox/")

    again = subprocess.run(
        [sys.executable, str(MANAGE), "demo_setup"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert again.stdout.count("alice / alice-demo") == 1
