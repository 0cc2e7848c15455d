"""Where the time goes (``make bench-profile``): cProfile of the capture path and of the
worker's requests, summarised as shares.

Capture: tracked saves in transactions, profiled on the wall clock (round trips to the
database are the cost); the receiver's cost is split into its parts (payload, owner,
INSERT, savepoint, kick) as shares of the whole tracked save.
Worker: ``delivery.drain`` on loopback with ``DELIVERY_CONCURRENCY=1`` (every request on
the profiled thread), profiled on CPU time; CPU per request unprofiled, beside a bare
``requests.Session``'s, and the self time by layer (requests, urllib3, the ORM, ...).
cProfile's own overhead weighs on code making many small calls: shares, not absolutes.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections import Counter
from typing import Any

from django.db import transaction
from django.test import override_settings

from bench.figures import emit
from bench.tenants import clear, tenant

TOP = 40
Key = tuple[str, int, str]


def _stats(profile: cProfile.Profile) -> dict[Key, Any]:
    return pstats.Stats(profile).stats  # type: ignore[attr-defined]


def _label(key: Key) -> str:
    path, line, name = key
    short = path.split("site-packages/")[-1].split("/lib/python3")[-1].lstrip("/")
    return f"{name} ({short}:{line})" if path != "~" else name


def top_self_time(stats: dict[Key, Any], total: float, count: int) -> None:
    emit(f"  top {count} by self time (share of the profiled total):")
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:count]
    for key, (_cc, calls, self_time, _cum, _callers) in ranked:
        emit(f"    {self_time / total:6.1%}  {calls:>8,} calls  {_label(key)}")


def cumulative(stats: dict[Key, Any], module: str, name: str, caller: str = "") -> float:
    """Cumulative time of ``module.name`` (only the calls made from ``caller`` if given)."""
    found = 0.0
    for (path, _line, func), (_cc, _nc, _tt, cum, callers) in stats.items():
        if func != name or not path.endswith(module):
            continue
        if not caller:
            found += cum
            continue
        found += sum(entry[3] for where, entry in callers.items() if where[2] == caller)
    return found


def _found(name: str, seconds: float) -> bool:
    """A part the profile has no call of was renamed or moved: say so, not "0%"."""
    if not seconds:
        emit(f"       -  {name.strip()}: not in this profile (renamed or moved?)")
    return bool(seconds)


def layer(path: str) -> str:
    if "django_datadog_partner" in path:
        return "django_datadog_partner"
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0]
    if path == "~":
        return "builtins (C calls: socket, json, ...)"
    return "stdlib " + path.rsplit("/", 1)[-1]


def profile_capture(saves: int) -> None:
    from tests.testapp.models import Order

    org, _ = tenant(0)
    clear()
    for n in range(200):  # warm-up
        with transaction.atomic():
            Order.objects.create(organization=org, number=str(n))
    profile = cProfile.Profile()  # wall clock: the round trips are the cost
    profile.enable()
    for n in range(saves):
        with transaction.atomic():
            Order.objects.create(organization=org, number=str(n))
    profile.disable()
    stats = _stats(profile)
    total = sum(entry[2] for entry in stats.values())
    captured = cumulative(stats, "tracking.py", "_capture")
    receiver = captured or total  # if it was renamed, the shares are of the whole save
    parts = {
        "the whole receiver (tracking._capture)": captured,
        "  build the payload, as stored JSON (Tracking.stored_event)": cumulative(
            stats, "tracking.py", "stored_event"
        ),
        "  owner and content type (_owner_of, _destination)": cumulative(
            stats, "tracking.py", "_owner_of"
        )
        + cumulative(stats, "tracking.py", "_destination"),
        "  outbox.append, all of it": cumulative(stats, "outbox.py", "append"),
        "    the INSERT, savepoint in the same message (cursor.execute in append)": cumulative(
            stats, "psycopg/cursor.py", "execute", "append"
        ),
        "    values adapted (outbox._params)": cumulative(stats, "outbox.py", "_params"),
        "  the kick (request_kick_on)": cumulative(stats, "delivery/kick.py", "request_kick_on"),
    }
    emit(
        f"capture profile: {saves:,} tracked saves, each in a transaction "
        f"({total / saves * 1e6:.0f} us profiled per save)"
    )
    for name, seconds in parts.items():
        if not _found(name, seconds):
            continue
        emit(
            f"  {seconds / total:6.1%} of the tracked save, {seconds / receiver:6.1%} of the "
            f"receiver, {seconds / saves * 1e6:6.0f} us  {name}"
        )
    top_self_time(stats, total, TOP)
    clear()


def profile_worker(requests_count: int) -> None:
    from django.conf import settings

    from bench.worker import queue_events
    from django_datadog_partner.delivery import drain

    partner = {**settings.DATADOG_PARTNER, "DELIVERY_CONCURRENCY": 1}
    cpu_per_request = []
    profile = cProfile.Profile(time.process_time)  # CPU: the worker's cost per request
    with override_settings(DATADOG_PARTNER=partner):
        for profiled in (False, True):
            clear()
            queue_events(0, requests_count)
            cpu = time.process_time()
            if profiled:
                profile.enable()
            drain()
            profile.disable()
            cpu_per_request.append((time.process_time() - cpu) / requests_count * 1e6)
    bare = bare_cpu(requests_count)
    stats = _stats(profile)
    total = sum(entry[2] for entry in stats.values())
    emit(
        f"worker profile: {requests_count:,} events on loopback, one request each, "
        f"DELIVERY_CONCURRENCY=1: {cpu_per_request[0]:.0f} us CPU per request unprofiled "
        f"({cpu_per_request[1]:.0f} profiled); a bare requests.Session: {bare:.0f} us"
    )
    parts = {
        "the HTTP seam (client.DatadogClient.request)": cumulative(stats, "client.py", "request"),
        "  requests' Session.request inside it": cumulative(stats, "sessions.py", "request"),
        "  urllib3's urlopen inside it": cumulative(stats, "connectionpool.py", "urlopen"),
        "  the transport's send inside it (transport.send)": cumulative(
            stats, "transport.py", "send", caller="request"
        ),
        "  reading the answer (client._read_capped)": cumulative(
            stats, "client.py", "_read_capped"
        ),
        "claim (delivery.claim)": cumulative(stats, "delivery/run.py", "claim"),
        "routing (delivery.routing.prepare)": cumulative(stats, "delivery/routing.py", "prepare"),
        "record outcomes (Recorder.record + flush)": cumulative(
            stats, "delivery/outcomes.py", "record"
        )
        + cumulative(stats, "delivery/outcomes.py", "flush"),
        "body encoding (transmit.Item.body)": cumulative(stats, "delivery/transmit.py", "body"),
    }
    for name, seconds in parts.items():
        if not _found(name, seconds):
            continue
        emit(
            f"  {seconds / total:6.1%} of the drain, {seconds / requests_count * 1e6:6.0f} us "
            f"per request  {name}"
        )
    by_layer: Counter[str] = Counter()
    for (path, _line, _name), entry in stats.items():
        by_layer[layer(path)] += entry[2]
    emit("  self time by layer (share of the profiled drain):")
    for name, seconds in by_layer.most_common(10):
        emit(f"    {seconds / total:6.1%}  {name}")
    top_self_time(stats, total, TOP)
    clear()


def bare_cpu(requests_count: int) -> float:
    """CPU per request of the bare ``requests.Session`` loop (posting only)."""
    import requests

    from django_datadog_partner.regions import get_site
    from tests.outbox_support import key_of

    _, conn = tenant(0)
    url = get_site(conn.domain).api_url + "/api/v1/events"
    headers = {"DD-API-KEY": key_of(conn), "Content-Type": "application/json"}
    body = b'{"title":"Order 1 updated","text":"status: paid","tags":["outbox_id:1"]}'
    session = requests.Session()
    cpu = time.process_time()
    for _ in range(requests_count):
        session.post(url, data=body, headers=headers, timeout=10).raise_for_status()
    return (time.process_time() - cpu) / requests_count * 1e6
