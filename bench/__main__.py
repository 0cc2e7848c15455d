"""``make bench``: issue 5's three figures, medians of per-round ratios, side by side.

1. tracked save / plain save, each in its own transaction, SQLite (WAL, synchronous=NORMAL);
2. events/s delivered by one worker (``delivery.drain``: claim, route, send, record) / a
   bare ``requests.Session`` loop posting the same bodies to the same local sink;
3. the same with 50 ms of latency added by the sink: worker events/s / sequential events/s.

The sinks are stdlib ``ThreadingHTTPServer`` processes on 127.0.0.1 answering 202.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 7
SAVES = 3000
SAVE_CHUNKS = 10
LOOPBACK_EVENTS = 2000
LATENCY_EVENTS = 1000
SEQUENTIAL_EVENTS = 40
LATENCY = 0.05


def start_sink(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.sink", str(latency)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}"


def report(name: str, measured: float, goal: str, met: bool) -> None:
    print(f"{name}: {measured:.2f} (goal {goal}) {'met' if met else 'missed'}", flush=True)


def save_ratio() -> float:
    """Each round times SAVES tracked and SAVES plain saves in alternating chunks, so the
    machine's drift hits both cases alike; the figure is the median of the round ratios."""
    from django.db import transaction

    from django_datadog_partner.models import OutboxEvent
    from django_datadog_partner.tracking import registry
    from tests.testapp.models import Order, Organization

    org = Organization.objects.create(name="bench")

    def chunk(tracked: bool, size: int) -> float:
        if tracked:
            registry.register_from_settings()
        else:
            registry.unregister(Order)
        start = time.perf_counter()
        for n in range(size):
            with transaction.atomic():
                Order.objects.create(organization=org, number=str(n))
        return time.perf_counter() - start

    chunk(True, SAVES // 4)  # warm-up
    ratios = []
    for n in range(ROUNDS):
        totals = {True: 0.0, False: 0.0}
        for _ in range(SAVE_CHUNKS):
            for tracked in (n % 2 == 0, n % 2 != 0):
                totals[tracked] += chunk(tracked, SAVES // SAVE_CHUNKS)
        Order.objects.all().delete()
        OutboxEvent.objects.all().delete()
        ratios.append(totals[True] / totals[False])
    registry.register_from_settings()
    return statistics.median(ratios)


def delivery_rates(
    domain: str, events: int, sequential: int, worker_first: bool
) -> tuple[float, float]:
    """(worker events/s, bare-Session events/s) for one round against ``domain``'s sink."""
    import requests
    from django.db import transaction

    from django_datadog_partner import payloads
    from django_datadog_partner.delivery import drain
    from django_datadog_partner.models import OutboxEvent
    from django_datadog_partner.regions import get_site
    from django_datadog_partner.tracking import send_event
    from tests.outbox_support import key_of, make_connection
    from tests.testapp.models import Organization

    org = Organization.objects.create(name=domain)
    conn = make_connection(org, domain=domain)
    with transaction.atomic():
        for n in range(events):
            send_event(org, title=f"Order {n} updated", text="status: paid\ntotal: 12.50")
    rows = list(OutboxEvent.objects.order_by("pk")[:sequential])
    bodies = [payloads.encode(payloads.as_sent(r.kind, r.payload, r.pk)) for r in rows]
    url = get_site(domain).api_url + "/api/v1/events"
    headers = {"DD-API-KEY": key_of(conn), "Content-Type": "application/json"}

    def worker() -> float:
        start = time.perf_counter()
        summary = drain()
        assert summary.counts["delivered"] == events, summary
        return events / (time.perf_counter() - start)

    def bare() -> float:
        session = requests.Session()
        start = time.perf_counter()
        for body in bodies:
            session.post(url, data=body, headers=headers, timeout=10).raise_for_status()
        rate = len(bodies) / (time.perf_counter() - start)
        session.close()
        return rate

    if worker_first:
        worker_rate = worker()
        bare_rate = bare()
    else:
        bare_rate = bare()
        worker_rate = worker()
    OutboxEvent.objects.all().delete()
    return worker_rate, bare_rate


def delivery_ratio(domain: str, events: int, sequential: int) -> tuple[float, float, float]:
    """Median per-round ratio (after one warm-up round), and the medians of both rates."""
    delivery_rates(domain, events // 4, min(sequential, events // 4), True)
    rounds = [delivery_rates(domain, events, sequential, n % 2 == 0) for n in range(ROUNDS)]
    ratio = statistics.median(w / b for w, b in rounds)
    return ratio, statistics.median(w for w, _ in rounds), statistics.median(b for _, b in rounds)


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    workdir = tempfile.mkdtemp(prefix="ddp-bench-")
    sinks = [start_sink(0.0), start_sink(LATENCY)]
    os.environ["BENCH_SINKS"] = ",".join(url for _, url in sinks)
    os.environ["BENCH_DB"] = str(Path(workdir) / "bench.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        ratio = save_ratio()
        report("tracked save / plain save (SQLite, atomic)", ratio, "<= 2.0", ratio <= 2.0)
        ratio, worker, bare = delivery_ratio("sink0.bench", LOOPBACK_EVENTS, LOOPBACK_EVENTS)
        report(
            f"one worker / bare requests.Session, loopback ({worker:.0f} vs {bare:.0f} events/s)",
            ratio, ">= 1.0", ratio >= 1.0,
        )  # fmt: skip
        ratio, worker, bare = delivery_ratio("sink1.bench", LATENCY_EVENTS, SEQUENTIAL_EVENTS)
        report(
            f"one worker / sequential, 50 ms latency ({worker:.0f} vs {bare:.1f} events/s)",
            ratio, ">= 15", ratio >= 15,
        )  # fmt: skip
        print(f"({ROUNDS} rounds, {time.perf_counter() - started:.0f} s)")
    finally:
        for process, _ in sinks:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
