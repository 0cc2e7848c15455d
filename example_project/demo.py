"""``make demo``: the example shop, the Datadog sandbox and a django-q2 cluster, together.

Migrates, creates the demo data (idempotent), starts ``runserver`` and ``qcluster`` and
prints the pages to open. Ctrl-C (or SIGTERM) stops both. ``PORT`` picks the port (8000).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
MANAGE = [sys.executable, str(HERE / "manage.py")]
STOP_TIMEOUT = 15.0
CLUSTER_READY = b"running."


def run(*args: str) -> None:
    subprocess.run([*MANAGE, *args], check=True)


def wait_until_serving(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own local server
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.2)
    return False


def forward_until(process: subprocess.Popen[bytes], marker: bytes) -> threading.Event:
    """Copy the process's output to ours; the event is set once ``marker`` was printed."""
    seen = threading.Event()

    def copy() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            if marker in line:
                seen.set()

    threading.Thread(target=copy, daemon=True).start()
    return seen


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def urls(base: str) -> str:
    lines = ["", "The demo is running (Ctrl-C stops the web server and the worker):"]
    if not os.environ.get("DATADOG_CLIENT_ID"):
        lines.append(f"  Datadog sandbox tile:   {base}/sandbox/  (click Connect Accounts)")
        lines.append(f"  What Datadog received:  {base}/sandbox/orgs/")
    lines.append(f"  The shop:               {base}/")
    lines.append(f"  Admin:                  {base}/admin/")
    return "\n".join(lines) + "\n"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    os.environ["PORT"] = str(port)
    base = os.environ.get("BASE_URL", f"http://127.0.0.1:{port}").rstrip("/")
    print("Preparing the database ...", flush=True)
    run("migrate", "--noinput", "-v", "0")
    run("demo_setup")
    signal.signal(signal.SIGTERM, _terminate)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # Own sessions: Ctrl-C reaches only this script, which stops each child exactly once
        # (a second signal while django-q2 is stopping can leave it hanging).
        web = subprocess.Popen(
            [*MANAGE, "runserver", f"127.0.0.1:{port}", "--noreload"], start_new_session=True
        )
        processes.append(web)
        cluster = subprocess.Popen(
            [*MANAGE, "qcluster"],
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        processes.append(cluster)
        cluster_ready = forward_until(cluster, CLUSTER_READY)
        if not wait_until_serving(base + "/accounts/login/", web):
            print("The web server did not start; see the messages above.", file=sys.stderr)
            return 1
        if not cluster_ready.wait(60):
            print("The qcluster did not start; see the messages above.", file=sys.stderr)
            return 1
        print(urls(base), flush=True)
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        print("A demo process stopped; stopping the others.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
        return 0
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())
