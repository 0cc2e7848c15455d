"""End to end: host saves -> outbox -> a real qcluster -> the sandbox served by live_server.

Two sandbox "sites" are the same server under two host names (``localhost`` and
``127.0.0.1``); the sandbox records at which site and with which org's key every request
arrived, so the tests can prove each owner's events went to its own site with its own key.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction

from django_datadog_partner import tasks
from django_datadog_partner.models import (
    Connection,
    OutboxEvent,
    OutboxKind,
    OutboxStatus,
    SiteBreaker,
)
from django_datadog_partner.sandbox.control import Sandbox
from django_datadog_partner.sandbox.state import Org
from django_datadog_partner.testing import make_connection
from tests.e2e_support import QCluster
from tests.outbox_support import outbox_id_in
from tests.testapp.models import Order, Organization

pytestmark = pytest.mark.e2e

SITE_A, SITE_B = "sandbox-a.test", "sandbox-b.test"


# The events these tests save: the sweeper also queues each connection's heartbeat metric.
EVENTS = OutboxEvent.objects.filter(kind=OutboxKind.EVENT)


@dataclass
class Tenant:
    owner: Organization
    org: Org
    connection: Connection


@pytest.fixture
def sites(live_server: Any, partner_settings: Any) -> dict[str, dict[str, str]]:
    url_a = live_server.url + "/sandbox"
    url_b = url_a.replace("://localhost:", "://127.0.0.1:")
    assert url_a != url_b
    extra = {
        domain: {"web_url": url, "api_url": url, "logs_url": url}
        for domain, url in ((SITE_A, url_a), (SITE_B, url_b))
    }
    partner_settings(EXTRA_SITES=extra)
    return extra


def tenants(sandbox: Sandbox, domains: list[str]) -> list[Tenant]:
    made = []
    for n, domain in enumerate(domains):
        owner = Organization.objects.create(name=f"owner-{n}")
        org = sandbox.create_org(f"dd-org-{n}")
        key = sandbox.create_api_key(org)
        made.append(Tenant(owner, org, make_connection(owner, domain=domain, api_key=key)))
    return made


def wait_until(condition: Callable[[], bool], timeout: float, tick: Callable[[], Any]) -> None:
    """Poll ``condition``; call ``tick`` about once a second meanwhile."""
    deadline = time.monotonic() + timeout
    next_tick = 0.0
    while not condition():
        now = time.monotonic()
        if now > deadline:
            rows = OutboxEvent.objects.values_list("status", "attempts", "last_error_code")
            raise AssertionError(f"timed out; outbox: {Counter(rows).most_common(8)}")
        if now >= next_tick:
            tick()
            next_tick = now + 1.0
        time.sleep(0.1)


def all_delivered(expected: int) -> Callable[[], bool]:
    def check() -> bool:
        return EVENTS.filter(status=OutboxStatus.DELIVERED).count() >= expected

    return check


def arrivals(sandbox: Sandbox, tenant: Tenant) -> list[tuple[int, str]]:
    """(outbox id, site domain) of every event that reached ``tenant``'s Datadog org."""
    found = []
    for item in sandbox.store.received(tenant.org.id, "event"):
        outbox_id = outbox_id_in("event", item.payload)
        assert outbox_id is not None, item.payload
        assert not any(tag.startswith("outbox_id") for tag in item.payload["tags"])
        found.append((outbox_id, item.extra["domain"]))
    return found


def save_orders(people: list[Tenant], count: int) -> None:
    """``count`` tracked saves spread over the tenants, in transactions of ten."""
    for start in range(0, count, 10):
        with transaction.atomic():
            for n in range(start, min(start + 10, count)):
                tenant = people[n % len(people)]
                Order.objects.create(organization=tenant.owner, number=f"{n}")


def test_thousand_saves_arrive_at_each_owners_site_with_its_key(qcluster, sites):
    sandbox = Sandbox()
    people = tenants(sandbox, [SITE_A, SITE_B, SITE_A, SITE_B])
    qcluster(partner_settings={"EXTRA_SITES": sites})
    save_orders(people, 1000)
    # Kicks deliver almost everything; a row whose attempt hit a transient error (a reset
    # from the loaded live server) waits for its retry, which the sweeper enqueues, as in
    # production (where it runs every minute).
    wait_until(all_delivered(1000), timeout=180, tick=tasks.sweep_outbox)
    assert EVENTS.exclude(status=OutboxStatus.DELIVERED).count() == 0
    for tenant in people:
        expected = set(EVENTS.filter(connection=tenant.connection).values_list("pk", flat=True))
        got = arrivals(sandbox, tenant)
        assert len(expected) == 250
        assert {outbox_id for outbox_id, _ in got} == expected
        assert {domain for _, domain in got} == {tenant.connection.domain}


def test_sigkill_of_the_cluster_mid_run_loses_nothing(qcluster, sites):
    sandbox = Sandbox()
    people = tenants(sandbox, [SITE_A, SITE_B, SITE_A])
    for tenant in people:
        sandbox.set_faults(tenant.org, slow_seconds=0.02)  # a slower Datadog: a longer run
    overrides = {
        "EXTRA_SITES": sites,
        "LEASE_SECONDS": 8,
        "HTTP_TIMEOUT": [1, 2],
        "DELIVERY_BATCH_SIZE": 50,
        "DELIVERY_CONCURRENCY": 4,
    }
    first: QCluster = qcluster(partner_settings=overrides)
    save_orders(people, 600)
    received = sandbox.store.received

    wait_until(lambda: len(received(None, "event")) >= 60, timeout=120, tick=lambda: None)
    first.kill()
    at_kill = len(received(None, "event"))
    assert at_kill < 600, "the run finished before the kill; slow the sandbox down"

    qcluster(partner_settings=overrides)
    # The sweeper's job (a schedule in production): re-kick rows whose lease ran out.
    wait_until(all_delivered(600), timeout=180, tick=tasks.sweep_outbox)

    counts: Counter[int] = Counter()
    for tenant in people:
        for outbox_id, domain in arrivals(sandbox, tenant):
            assert domain == tenant.connection.domain
            assert OutboxEvent.objects.get(pk=outbox_id).connection_id == tenant.connection.pk
            counts[outbox_id] += 1
    assert set(counts) == set(EVENTS.values_list("pk", flat=True))
    duplicates = {pk: n for pk, n in counts.items() if n > 1}
    # Only requests sent but not recorded before the kill can repeat: at most the rows the
    # killed workers held (two workers, one batch each).
    assert sum(n - 1 for n in duplicates.values()) <= 2 * 50


def test_a_site_that_is_down_opens_its_breaker_and_its_backlog_drains_after(qcluster, sites):
    sandbox = Sandbox()
    down, up = tenants(sandbox, [SITE_A, SITE_B])
    sandbox.set_faults(down.org, intake="503")
    # At most 8 requests in flight per task: what a run has in flight when it sees the
    # threshold is attempted anyway, and a run that learned a long round trip from the
    # last one starts with all 100 rows of the down site in flight.
    overrides = {"EXTRA_SITES": sites, "BREAKER_THRESHOLD": 3, "BREAKER_COOLDOWN": 2,
                 "DELIVERY_CONCURRENCY": 8}  # fmt: skip
    qcluster(partner_settings=overrides)
    save_orders([down, up], 200)

    def up_delivered_and_a_open() -> bool:
        rows = EVENTS.filter(connection=up.connection)
        tripped = SiteBreaker.objects.filter(domain=SITE_A, open_until__isnull=False)
        return rows.filter(status=OutboxStatus.DELIVERED).count() == 100 and tripped.exists()

    wait_until(up_delivered_and_a_open, timeout=120, tick=tasks.sweep_outbox)
    breaker = SiteBreaker.objects.get(domain=SITE_A)
    assert breaker.open_until is not None and breaker.failures >= 3
    assert not SiteBreaker.objects.filter(domain=SITE_B, failures__gt=0).exists()
    waiting = EVENTS.filter(owner_object_id=str(down.owner.pk))
    assert waiting.filter(status=OutboxStatus.PENDING).count() == 100
    # Without the breaker every row would have failed at least once by now; with it only
    # the requests in flight when each concurrent run saw the threshold, and the probes.
    untouched = waiting.filter(attempts=0).count()
    assert untouched >= 75, untouched

    sandbox.clear_faults(down.org)
    wait_until(all_delivered(200), timeout=120, tick=tasks.sweep_outbox)
    assert {outbox_id for outbox_id, _ in arrivals(sandbox, down)} == set(
        waiting.values_list("pk", flat=True)
    )
    closed = SiteBreaker.objects.get(domain=SITE_A)
    assert (closed.failures, closed.open_until) == (0, None)
