"""Batches: requests per 2,000 log rows and per 2,000 metric points, against the fewest
Datadog's limits allow (logs: 1,000 entries and 5 MB uncompressed per request; series
v2: 512,000 bytes per request), whatever the claim size."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django.db import transaction

from bench.figures import figure
from bench.sinks import Sink
from bench.tenants import clear, tenant

ROWS = 2000
LIMITS = {"log": (1000, 5_000_000, "/api/v2/logs"), "metric": (None, 512_000, "/api/v2/series")}


def fewest(sizes: list[int], max_items: int | None, max_bytes: int) -> int:
    """Requests needed at Datadog's limits (a JSON array: one comma per item, brackets)."""
    by_items = math.ceil(len(sizes) / max_items) if max_items else 1
    return max(by_items, math.ceil((sum(sizes) + len(sizes) + 16) / max_bytes))


def measure(sink: Sink, kind: str, queue: Callable[[Any, int], object]) -> tuple[int, int, int]:
    """(requests made, fewest possible, items the sink received) for ``ROWS`` rows."""
    from django_datadog_partner import payloads
    from django_datadog_partner.delivery import drain
    from django_datadog_partner.models import OutboxEvent

    clear()
    org, _ = tenant(0)
    with transaction.atomic():
        for n in range(ROWS):
            queue(org, n)
    sizes = [
        len(payloads.encode(payloads.as_sent(r.kind, r.payload, r.pk)))
        for r in OutboxEvent.objects.all()
    ]
    sink.reset()
    summary = drain()
    assert summary.counts.get("delivered") == ROWS, summary
    max_items, max_bytes, path = LIMITS[kind]
    stats = sink.stats()
    return stats["by_path"].get(path, 0), fewest(sizes, max_items, max_bytes), stats["items"]


def run(sink: Sink) -> None:
    from django.utils import timezone

    from django_datadog_partner.tracking import send_log, send_metric

    now = timezone.now()
    cases = {
        "log": lambda org, n: send_log(org, f"order {n} paid", attributes={"order": n}),
        "metric": lambda org, n: send_metric(
            org, "shop.orders.total", n, tags=[f"n:{n % 50}"], when=now
        ),
    }
    for kind, queue in cases.items():
        made, best, items = measure(sink, kind, queue)
        figure(
            f"batches: requests per {ROWS:,} {kind} rows",
            [made],
            f"<= {best}",
            made <= best,
            context=f"{items:,} items received",
            sink=True,
        )
