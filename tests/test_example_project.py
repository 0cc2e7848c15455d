"""``make demo``: the example project starts, serves the sandbox tile and stops cleanly."""

from __future__ import annotations

import os
import secrets
import select
import shutil
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


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MANAGE), *args], env=env, capture_output=True, text=True, check=True
    )


def processes_marked(marker: str) -> list[str]:
    """``pid cmdline`` of every live process whose environment holds ``marker``: each
    process the demo starts, at any depth, inherits it."""
    wanted = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and wanted in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{entry.name} {command}")
        except OSError:
            continue  # gone meanwhile, or not ours
    return found


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


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
    # A clean stop; on a loaded machine the cluster may need longer than the demo's stop
    # timeout, and the demo then says it killed it (nothing is left running either way).
    assert "has stopped" in output or "qcluster did not stop within" in output, output
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/sandbox/")

    again = manage(env, "demo_setup")
    assert again.stdout.count("alice / alice-demo") == 1
    # The demo created django-q2's schedules: its own checks and status report are clean.
    checked = manage(env, "check", "--database", "default")
    assert "System check identified no issues" in checked.stdout + checked.stderr
    status = manage(env, "datadog_partner_status").stdout
    assert "Schedules missing" not in status
    assert "No Datadog connections." in status


@pytest.mark.skipif(
    not Path("/proc/self/environ").exists() or shutil.which("make") is None,
    reason="needs Linux's /proc and make",
)
def test_make_demo_in_the_background_stopped_by_sigterm_to_its_group_leaves_nothing(
    tmp_path: Path,
) -> None:
    port = free_port()
    marker = f"DEMO_TEST_MARKER={secrets.token_hex(8)}"
    env = {**demo_env(tmp_path, port), marker.split("=")[0]: marker.split("=")[1]}
    # As a CI script or `make demo &` runs it: a non-interactive shell's background job,
    # with SIGINT ignored; make forwards the group's SIGTERM, so the demo gets it twice.
    make = f"make -s -C {ROOT} demo STAMP= BIN={Path(sys.executable).parent}"
    shell = subprocess.Popen(
        ["sh", "-c", f"{make} & wait"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        read_until(shell, "Admin:")
        assert listening(port)
        started = processes_marked(marker)
        assert any("runserver" in line for line in started), started
        assert any("qcluster" in line for line in started), started
        os.killpg(shell.pid, signal.SIGTERM)
        # Within the 10 s `docker stop` and most supervisors give before their SIGKILL.
        deadline = time.monotonic() + 10
        while processes_marked(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = processes_marked(marker)
        assert not left, "still running after SIGTERM:\n" + "\n".join(left)
        assert not listening(port)
    finally:
        for line in processes_marked(marker):  # never leave a stray demo behind
            os.kill(int(line.split()[0]), signal.SIGKILL)
        shell.wait(timeout=10)
        assert shell.stdout is not None
        shell.stdout.close()


def test_the_shops_own_test_suite_passes(tmp_path: Path) -> None:
    """Order creation, payment messages and what Datadog receives (``shop/tests.py``)."""
    result = subprocess.run(
        [sys.executable, str(MANAGE), "test", "--debug-mode", "--noinput", "shop"],
        env=demo_env(tmp_path, free_port()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ran 4 tests" in result.stderr and "OK" in result.stderr


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout_and_the_demo_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a loaded machine does to a slow ``qcluster`` stop: the demo kills it, aloud."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_script", DEMO)
    assert spec and spec.loader
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    monkeypatch.setattr(demo, "STOP_TIMEOUT", 0.5)
    stubborn = tmp_path / "manage.py"
    stubborn.write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    monkeypatch.setattr(demo, "MANAGE", [sys.executable, str(stubborn)])
    child = demo.start("qcluster", stdout=subprocess.PIPE)
    assert child.stdout is not None
    with child.stdout:
        assert child.stdout.readline() == b"ready\n"
        started = time.monotonic()
        demo.stop([child])
    assert child.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10
    assert "qcluster did not stop within 0.5 s: killed." in capsys.readouterr().out
