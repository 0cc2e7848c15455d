"""One database's part of ``make bench``, in a process of its own (Django is set up once,
with ``bench.settings`` as the environment picks them; ``bench.__main__`` starts it).

``python -m bench.suite sqlite|postgresql [--quick] [--only PART ...]``: each part prints
its figure lines; a part that cannot run prints why and makes the exit status 1. The
``profile`` part runs only when named.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable

import django

from bench.figures import emit, skipped
from bench.sinks import Sink


def parts(backend: str, sink: Sink, quick: bool) -> dict[str, Callable[[], None]]:
    """The parts for ``backend``, in the order they run (scale last: its big tables are
    dropped when it ends, and nothing after it should pay for them)."""
    from bench import batches, capture, memory, pipeline, profiling, recovery, scale, worker

    label = "SQLite" if backend == "sqlite" else "PostgreSQL"
    stack = f"{label} + {'Redis' if os.environ.get('BENCH_REDIS') else 'ORM broker'}"
    found: dict[str, Callable[[], None]] = {"capture": lambda: capture.run(label, quick)}
    if backend == "sqlite":
        found["worker"] = lambda: worker.run(sink, quick)
        found["batches"] = lambda: batches.run(sink)
        found["memory"] = lambda: memory.run(sink, quick)
        found["pipeline"] = lambda: pipeline.run(stack, sink, quick)
        found["profile"] = lambda: profiling.profile_worker(1000 if quick else 5000)
    else:
        found["pipeline"] = lambda: pipeline.run(stack, sink, quick)
        found["clusters"] = lambda: pipeline.two_clusters(stack, sink, quick)
        found["recovery"] = lambda: recovery.run(stack, sink, quick)
        found["profile"] = lambda: profiling.profile_capture(1000 if quick else 5000)
    found["scale"] = lambda: scale.run(label, quick)
    return found


#: Parts that run only when asked for by name (``make bench-profile``).
ON_REQUEST = frozenset({"profile"})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("backend", choices=("sqlite", "postgresql"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    sink = Sink(os.environ["BENCH_SINK"])
    failed = False
    for name, part in parts(args.backend, sink, args.quick).items():
        if name not in args.only if args.only is not None else name in ON_REQUEST:
            continue
        started = time.perf_counter()
        try:
            part()
        except Exception:
            failed = True
            skipped(f"{name} ({args.backend})", "could not run:\n" + traceback.format_exc())
        emit(f"  ({name}, {args.backend}: {time.perf_counter() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
