"""``make bench`` (``python -m bench``) and ``make bench-quick`` (``--quick``).

Starts PostgreSQL and Redis as CI does (``scripts/ensure-services.sh``), the asyncio sink
(its capacity is measured first and printed beside every figure that uses it), then one
``bench.suite`` process per database: SQLite + django-q2's ORM broker always, PostgreSQL +
Redis when they answer (otherwise a line says what was skipped). Every figure is one line,
``<name>: <median> (<min>..<max>) (goal <goal>) met|missed``; the exit status is non-zero
only if a part could not run. See bench/README.md for what each figure measures.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/0"  # the cluster name is per run, so keys never collide


def answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def ensure_services() -> tuple[bool, bool]:
    """(PostgreSQL answers, Redis answers) after trying to start them like CI."""
    if not (answers(5432) and answers(6379)):
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "ensure-services.sh")],
            check=False,
            stdout=subprocess.DEVNULL,
        )
    return answers(5432), answers(6379)


def drop_redis_keys(cluster: str) -> None:
    """The run's queue and django-q2's stats keys (the cluster name is the run's own)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"django_q:{cluster}:*"):
        client.delete(key)


@contextmanager
def postgres_database(name: str) -> Iterator[None]:
    import psycopg

    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import django

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), load average {load}; Python "
        f"{platform.python_version()}, Django {django.get_version()}"
    )


def run_suite(backend: str, env: dict[str, str], args: argparse.Namespace) -> int:
    only = ["profile"] if args.profile else args.only
    quick = ["--quick"] if args.quick else []
    command = [
        sys.executable,
        "-m",
        "bench.suite",
        backend,
        *quick,
        *(["--only", *only] if only else []),
    ]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="one round, small counts (CI)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only the profiles: capture on PostgreSQL, the worker on SQLite",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="PART",
        help="only these parts: capture, worker, batches, memory, pipeline, clusters, "
        "recovery, scale, profile",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    from bench.figures import emit, skipped
    from bench.sinks import Sink, capacity

    emit(machine())
    postgres, redis = ensure_services()
    workdir = Path(tempfile.mkdtemp(prefix="ddp-bench-"))
    sink = Sink.start()
    cluster = f"ddp-bench-{os.getpid()}"
    failures = 0
    try:
        rate = capacity(sink.url, 1.0 if args.quick else 3.0)
        emit(
            f"sink capacity: {rate:,.0f} req/s (asyncio sink, one process; minimal asyncio "
            "client, 8 keep-alive connections, both on these cores)"
        )
        env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="bench.settings",
            BENCH_SINK=sink.url,
            BENCH_SINK_CAPACITY=str(rate),
            BENCH_CLUSTER=cluster,
            BENCH_WORKDIR=str(workdir),
            PYTHONPATH=str(ROOT),
        )
        emit("== SQLite (WAL, synchronous=NORMAL) + django-q2 ORM broker")
        sqlite_env = dict(env, BENCH_SQLITE=str(workdir / "bench.sqlite3"))
        failures += run_suite("sqlite", sqlite_env, args) != 0
        if not postgres:
            skipped("PostgreSQL parts", "PostgreSQL does not answer on 127.0.0.1:5432")
        else:
            name = f"ddp_bench_{os.getpid()}"
            broker = "Redis" if redis else "ORM broker (Redis does not answer)"
            sync = os.environ.get("BENCH_PG_SYNC", "off")
            emit(f"== PostgreSQL (synchronous_commit={sync}) + {broker}")
            pg_env = dict(env, BENCH_PG_DB=name, **({"BENCH_REDIS": REDIS_URL} if redis else {}))
            with postgres_database(name):
                failures += run_suite("postgresql", pg_env, args) != 0
    finally:
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if redis:
            drop_redis_keys(cluster)
    kind = "profile" if args.profile else "quick bench" if args.quick else "full bench"
    emit(
        f"({kind}, {time.perf_counter() - started:.0f} s; "
        f"{failures} database suite(s) with parts that could not run)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
