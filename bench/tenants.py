"""What the delivery benches share: one owner per sink latency, with an active connection
to that latency's site, and a clean outbox and queue between measurements."""

from __future__ import annotations

import functools
from typing import Any

from django.db import connection, transaction

from bench.sinks import domain


@functools.cache
def tenant(latency_ms: int) -> tuple[Any, Any]:
    """(Organization, Connection) whose events go to the sink after ``latency_ms``."""
    from django_datadog_partner.testing import make_connection
    from tests.testapp.models import Organization

    org = Organization.objects.create(name=f"latency-{latency_ms}")
    return org, make_connection(org, domain=domain(latency_ms))


def save_orders(latency_ms: int, count: int, per_transaction: int = 10) -> None:
    """``count`` tracked saves (each queues an outbox row), in transactions of ten."""
    from tests.testapp.models import Order

    org, _ = tenant(latency_ms)
    for start in range(0, count, per_transaction):
        with transaction.atomic():
            for n in range(start, min(start + per_transaction, count)):
                Order.objects.create(organization=org, number=str(n))


def clear() -> None:
    """Empty the outbox, the host rows and the task queue (kicks left by earlier parts)."""
    from django_q.brokers import get_broker

    from django_datadog_partner.delivery import kick
    from django_datadog_partner.models import OutboxEvent, SiteBreaker
    from tests.testapp.models import Order

    for model in (OutboxEvent, Order, SiteBreaker):
        model.objects.all()._raw_delete(connection.alias)
    get_broker().purge_queue()
    kick.reset()
