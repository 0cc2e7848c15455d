"""A real django-q2 cluster for end-to-end tests (also used by the browser tests).

``start_qcluster()`` runs ``python -m django qcluster`` with ``tests.settings`` on the
database the test run created (``DDP_TEST_CHILD``; the child inherits ``TEST_DB_SUFFIX``,
``DATABASE_URL`` and ``REDIS_URL``), passes ``DATADOG_PARTNER`` overrides such as the
``EXTRA_SITES`` of a live sandbox (``DDP_PARTNER_OVERRIDES``), waits until the cluster
says it is running, and stops it with SIGTERM, then SIGKILL, on exit. The test must use
the ``transactional_db`` (or ``live_server``) fixture so the child sees committed data::

    from tests.e2e_support import qcluster  # noqa: F401  (the fixture)

    @pytest.mark.e2e
    def test_delivery(qcluster, live_server):  # noqa: F811
        cluster = qcluster(partner_settings={"EXTRA_SITES": {...}})
        ...
        cluster.kill()  # SIGKILL, mid-run
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
READY_MARK = "running."


@dataclass
class QCluster:
    """One ``qcluster`` process group and its log."""

    process: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = field(default=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_MARK in self.log():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"qcluster did not start:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM to the whole group (django-q2 finishes its tasks), SIGKILL after ``timeout``."""
        if self.stopped:
            return
        self._signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=timeout)
        self.stopped = True

    def kill(self) -> None:
        """SIGKILL every process of the cluster at once (a crashed host)."""
        if self.stopped:
            return
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.stopped = True

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)  # the group id is the child's pid (new session)


def child_environment(
    partner_settings: Mapping[str, Any] | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a child process that works on this run's test database."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DDP_TEST_CHILD="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
    )
    if partner_settings:
        env["DDP_PARTNER_OVERRIDES"] = json.dumps(dict(partner_settings))
    env.update(extra or {})
    return env


def start_qcluster(
    log_path: Path,
    *,
    partner_settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 60.0,
) -> QCluster:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "qcluster"],
            cwd=ROOT,
            env=child_environment(partner_settings, env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster = QCluster(process, log_path)
    cluster.wait_ready(ready_timeout)
    return cluster


@pytest.fixture
def qcluster(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., QCluster]]:
    """A factory starting clusters (``qcluster(partner_settings=...)``); all are stopped
    at the end of the test, and their logs are printed if the test failed."""
    started: list[QCluster] = []

    def start(**kwargs: Any) -> QCluster:
        cluster = start_qcluster(tmp_path / f"qcluster-{len(started)}.log", **kwargs)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()
        print(f"--- {cluster.log_path.name} (tail) ---\n{cluster.log()[-2000:]}")
