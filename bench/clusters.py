"""Real ``qcluster`` processes on the bench's database and broker (through
``tests.e2e_support``), the sweeper schedule production runs, and waiting for the sink."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.probe import counted
from bench.sinks import Sink
from tests.e2e_support import QCluster, start_qcluster

SWEEPER = "django_datadog_partner.tasks.sweep_outbox"


def task_log() -> Path:
    return Path(os.environ["BENCH_WORKDIR"]) / "tasks.log"


def reset_task_log() -> None:
    task_log().unlink(missing_ok=True)


def delivery_tasks() -> int:
    return counted(str(task_log())).get("deliver_due", 0)


def ensure_sweeper() -> None:
    """Only the sweeper of the app's schedules: the others would check connections' health
    against the sink. Due now, so a cluster's scheduler runs it on its first pass."""
    from django.utils import timezone
    from django_q.models import Schedule

    from django_datadog_partner.schedules import SCHEDULES

    spec = next(spec for spec in SCHEDULES if spec.func == SWEEPER)
    Schedule.objects.update_or_create(
        name=spec.name, defaults={**spec.fields(), "next_run": timezone.now()}
    )


_started = 0
#: Each cluster's CPU seconds when it said it runs (its start-up is not the drain's cost).
_cpu_at_ready: dict[int, float] = {}


def start(count: int = 1, partner: dict[str, Any] | None = None) -> tuple[list[QCluster], float]:
    """Start ``count`` clusters at once; returns them and when the first said it runs
    (``time.time()``, the sink's clock)."""
    import json

    global _started
    ensure_sweeper()
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "BENCH_TASK_LOG": str(task_log()),
        "BENCH_Q_LOG_LEVEL": "INFO",
        "BENCH_PARTNER": json.dumps(partner or {}),
    }
    logs = []
    for _ in range(count):
        _started += 1
        logs.append(Path(os.environ["BENCH_WORKDIR"]) / f"qcluster-{_started}.log")

    def one(log: Path) -> tuple[QCluster, float]:
        cluster = start_qcluster(log, env=env)
        at = time.time()
        _cpu_at_ready[cluster.process.pid] = cpu_seconds([cluster])
        return cluster, at

    with ThreadPoolExecutor(count) as pool:
        started = list(pool.map(one, logs))
    return [cluster for cluster, _ in started], min(at for _, at in started)


@dataclass
class Arrived:
    stats: dict[str, Any]
    complete: bool


def wait_for(sink: Sink, rows: int, timeout: float) -> Arrived:
    """Poll the sink until ``rows`` distinct outbox ids arrived, or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        stats = sink.stats()
        if stats["unique"] >= rows:
            return Arrived(sink.stats(ids=True), True)
        if time.monotonic() > deadline:
            return Arrived(sink.stats(ids=True), False)
        time.sleep(0.1)


#: Clock ticks per second of /proc/<pid>/stat's CPU times.
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(clusters: list[QCluster]) -> float:
    """CPU time (user + system) the clusters' processes have used so far: every process of
    their process groups, with the children each has reaped."""
    groups = {cluster.process.pid for cluster in clusters}
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        # After the command: state, ppid, pgrp, ...; utime, stime, cutime, cstime are 12-15.
        if int(fields[2]) in groups:
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / TICKS


def cpu_since_ready(clusters: list[QCluster]) -> float:
    """CPU seconds the clusters used since each said it runs."""
    return cpu_seconds(clusters) - sum(_cpu_at_ready[c.process.pid] for c in clusters)


def stop(clusters: list[QCluster]) -> None:
    """SIGKILL: called once every row has arrived (or the wait gave up), so nothing is lost
    that a graceful stop would keep, and a round does not wait for django-q2's shutdown."""
    for cluster in clusters:
        cluster.kill()
