"""``make demo``: the example shop, the Datadog sandbox and a django-q2 cluster, together.

Migrates, creates django-q2's schedules and the demo data (all idempotent), starts
``runserver`` and ``qcluster`` and prints the pages to open. ``PORT`` picks the port (8000).

Stopping: Ctrl-C, SIGTERM or SIGHUP, sent once or several times, to this script or to its
whole process group (``make`` forwards it too), stops everything the demo started. Each
child leads its own process group, so a terminal's Ctrl-C reaches only this script, which
sends each child SIGTERM once and SIGKILL to whatever is left of its group after
``STOP_TIMEOUT`` (saying so). On Linux the children also get SIGTERM when this script
dies without cleaning up (SIGKILL).
A signal ignored when the script started (SIGINT for a background job) stays ignored.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
MANAGE = [sys.executable, str(HERE / "manage.py")]
PREPARE = (("migrate", "--noinput", "-v", "0"), ("datadog_partner_schedule",), ("demo_setup",))
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Inside the 10 s a supervisor such as `docker stop` waits before its own SIGKILL.
STOP_TIMEOUT = 8.0
CLUSTER_READY = b"running."
PR_SET_PDEATHSIG = 1


class StopRequest:
    """Set by the first stop signal. The handler only records it, so a second signal (make
    forwarding the one the group got) cannot interrupt the stopping itself."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum

    @property
    def requested(self) -> bool:
        return self.signal is not None


def say(text: str, *, error: bool = False) -> None:
    """Print, ignoring a closed terminal or pipe: stopping must go on regardless."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr if error else sys.stdout, flush=True)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when this script dies."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, not in the child
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return arm


def start(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*MANAGE, *args], start_new_session=True, preexec_fn=die_with_parent(), **kwargs
    )


def stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each child, then SIGKILL what is left of its process group after the timeout.

    SIGTERM goes to the leader only: qcluster stops its own workers, and one signalled
    directly can leave it waiting. The group id stays reserved while any member lives, so
    the SIGKILL after the leader exited reaches only what the leader left behind.
    """
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if process.poll() is None:
            command = process.args[len(MANAGE)]  # type: ignore[index]
            print(f"{command} did not stop within {STOP_TIMEOUT:g} s: killed.", flush=True)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for(
    ready: Callable[[], bool],
    request: StopRequest,
    processes: Sequence[subprocess.Popen[bytes]],
    timeout: float,
) -> bool:
    """True once ``ready()``; False on timeout, on a stop request or when a child exited."""
    deadline = time.monotonic() + timeout
    while not request.requested and time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            return False
        if ready():
            return True
        time.sleep(0.2)
    return False


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own local server
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def forward_until(process: subprocess.Popen[bytes], marker: bytes) -> threading.Event:
    """Copy the process's output to ours; the event is set once ``marker`` was printed.

    The pipe is drained even once our own output is gone, so the child never blocks on it.
    """
    seen = threading.Event()

    def copy() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with contextlib.suppress(OSError):
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
            if marker in line:
                seen.set()

    threading.Thread(target=copy, daemon=True).start()
    return seen


def prepare(request: StopRequest) -> bool:
    """Run the idempotent setup commands; False when one failed or a stop was requested."""
    for args in PREPARE:
        result = subprocess.run([*MANAGE, *args], check=False)
        if request.requested:
            return False
        if result.returncode:
            say(f"manage.py {args[0]} failed; see the messages above.", error=True)
            return False
    return True


def urls(base: str) -> str:
    lines = ["", "The demo is running (Ctrl-C stops the web server and the worker):"]
    if not os.environ.get("DATADOG_CLIENT_ID"):
        lines.append(f"  Datadog sandbox tile:   {base}/sandbox/  (click Connect Accounts)")
        lines.append(f"  What Datadog received:  {base}/sandbox/orgs/")
    lines.append(f"  The shop:               {base}/")
    lines.append(f"  Admin:                  {base}/admin/")
    return "\n".join(lines) + "\n"


def main() -> int:
    request = StopRequest()
    request.install()
    port = int(os.environ.get("PORT", "8000"))
    os.environ["PORT"] = str(port)
    base = os.environ.get("BASE_URL", f"http://127.0.0.1:{port}").rstrip("/")
    say("Preparing the database ...")
    if not prepare(request):
        return 0 if request.requested else 1
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(start("runserver", f"127.0.0.1:{port}", "--noreload"))
        cluster = start("qcluster", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        processes.append(cluster)
        cluster_ready = forward_until(cluster, CLUSTER_READY)
        started = wait_for(
            lambda: answers(base + "/accounts/login/"), request, processes, 30
        ) and wait_for(cluster_ready.is_set, request, processes, 60)
        if started:
            say(urls(base))
            wait_for(lambda: False, request, processes, math.inf)
        if request.requested:
            say("\nStopping ...")
            return 0
        say("A demo process did not start or stopped; see the messages above.", error=True)
        return 1
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())
