"""A bench-only app in the clusters: each task a worker starts appends its function's name
to ``BENCH_TASK_LOG`` (one ``O_APPEND`` write, atomic across processes), so a bench can
count delivery tasks per event without saving django-q2 results."""

from __future__ import annotations

import os
from typing import Any

from django.apps import AppConfig


def record(sender: Any, func: Any, task: dict[str, Any], **kwargs: Any) -> None:
    name = task.get("func") if isinstance(task.get("func"), str) else getattr(func, "__name__", "")
    line = f"{str(name).rsplit('.', 1)[-1]}\n".encode()
    fd = os.open(os.environ["BENCH_TASK_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def counted(path: str) -> dict[str, int]:
    """Tasks started per function name so far."""
    try:
        with open(path) as log:
            names = log.read().split()
    except FileNotFoundError:
        return {}
    return {name: names.count(name) for name in set(names)}


class ProbeConfig(AppConfig):
    name = "bench.probe"
    label = "bench_probe"

    def ready(self) -> None:
        from django_q.signals import pre_execute

        pre_execute.connect(record, dispatch_uid="bench.probe")
