"""Memory: RSS growth of a delivery process over many deliveries.

A fresh process (``python -m bench.memory TOTAL CHUNK``) repeatedly queues ``CHUNK`` rows
(one bulk INSERT), drains them into the sink with ``delivery.drain`` and deletes them; RSS
is read after each chunk. Growth is last / first reading, the first taken after one chunk
so imports, pools and caches are already in it.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.figures import figure
from bench.sinks import Sink

QUICK = (1800, 600)
FULL = (100_000, 5000)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def deliver(total: int, chunk: int) -> list[int]:
    """In the child: the RSS after each chunk delivered."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection
    from django.utils import timezone

    from bench.tenants import tenant
    from django_datadog_partner import payloads
    from django_datadog_partner.delivery import drain
    from django_datadog_partner.models import OutboxEvent

    org, conn = tenant(0)
    owner_type = ContentType.objects.get_for_model(org)
    readings = []
    for start in range(0, total, chunk):
        rows = [
            OutboxEvent(
                kind="event",
                owner_content_type=owner_type,
                owner_object_id=str(org.pk),
                connection=conn,
                source="bench",
                payload=payloads.event(
                    title=f"Order {n} updated",
                    text="paid",
                    date_happened=timezone.now(),
                    source_type_name="bench",
                ),
            )
            for n in range(start, start + chunk)
        ]
        OutboxEvent.objects.bulk_create(rows)
        summary = drain()
        assert summary.counts.get("delivered") == chunk, summary
        OutboxEvent.objects.all()._raw_delete(connection.alias)
        gc.collect()
        readings.append(rss_kib())
    return readings


def run(sink: Sink, quick: bool) -> None:
    total, chunk = QUICK if quick else FULL
    sink.reset()
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", str(total), str(chunk)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )
    if out.returncode:
        raise RuntimeError(f"the delivery process failed:\n{out.stderr[-3000:]}")
    readings = json.loads(out.stdout.strip().splitlines()[-1])
    growth = (readings[-1] - readings[0]) / readings[0] * 100
    delivered = sink.stats()["unique"]
    figure(
        f"memory: delivery process RSS growth over {total:,} deliveries",
        [growth],
        "< 10%",
        growth < 10,
        unit="%",
        sink=True,
        context=f"{readings[0] / 1024:.1f} -> {readings[-1] / 1024:.1f} MiB, "
        f"peak {max(readings) / 1024:.1f} MiB, {delivered:,} rows at the sink",
    )


if __name__ == "__main__":
    import django

    django.setup()
    print(json.dumps(deliver(int(sys.argv[1]), int(sys.argv[2]))))
