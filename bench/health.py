"""Scale of the hourly health sweep: statements per due connection, whether the due
selection reads an index, its time among many connections, and whether a row lock is
held while Datadog is called (the token refresh). Datadog is ``responses`` here: only
statements are counted, nothing is sent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import responses
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench.figures import detail, figure, text_figure
from bench.plans import analyze, as_text, clone, explain, full_scan, median_ms
from bench.sinks import domain

DUE = (5, 10, 20)


def connections(total: int) -> Any:
    """``total`` healthy connections of one owner, checked an hour ago (every other one
    too, so the sweeps below see only the due ones they make); returns their queryset."""
    from django_datadog_partner.models import Connection
    from django_datadog_partner.regions import get_site
    from django_datadog_partner.testing import make_connection
    from tests.testapp.models import Organization

    owner = Organization.objects.create(name="health")
    site = get_site(domain(0))
    template = make_connection(owner, domain=site.domain, site=site.web_url, dd_org_id="org-0")
    clone(Connection, template.pk, total - 1, {"dd_org_id": f"'org-' || {as_text('n')}"})
    spread_checks(Connection, timezone.now() - timedelta(hours=1))
    analyze(Connection)
    return Connection.objects.filter(owner_object_id=str(owner.pk), domain=site.domain)


def spread_checks(model: Any, latest: Any) -> None:
    """Every connection checked at its own time up to ``latest`` (a millisecond apart, as
    checks spread over the day are): the planner's statistics see distinct times."""
    table = connection.ops.quote_name(model._meta.db_table)
    if connection.vendor == "sqlite":
        value = "strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s, '-' || (id / 1000.0) || ' seconds')"
        latest = latest.replace(tzinfo=None).isoformat(" ")
    else:
        value = "%s - id * interval '1 millisecond'"
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET health_checked_at = {value}", [latest])


def sweep(owned: Any, due: int, locks: list[bool]) -> CaptureQueriesContext:
    """Make ``due`` connections due, run the sweep, return its statements."""
    from django_datadog_partner.connections import run_scheduled_health_checks
    from django_datadog_partner.regions import get_site
    from tests.lifecycle_support import token_json

    ids = list(owned.order_by("pk").values_list("pk", flat=True)[:due])
    owned.filter(pk__in=ids).update(health_checked_at=timezone.now() - timedelta(days=2))
    api = get_site(domain(0)).api_url

    def token(request: Any) -> tuple[int, dict[str, str], str]:
        locks.append(connection.in_atomic_block)  # the refresh's SELECT ... FOR UPDATE
        import json

        return 200, {}, json.dumps(token_json())

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.add_callback(responses.POST, f"{api}/oauth2/v1/token", callback=token)
        mocked.get(f"{api}/api/v1/validate", json={"valid": True})
        with CaptureQueriesContext(connection) as captured:
            summary = run_scheduled_health_checks()
    assert (summary.checked, summary.healthy) == (due, due), summary
    return captured


def run(label: str, total: int) -> None:
    owned = connections(total)
    locks: list[bool] = []
    counts = {due: len(sweep(owned, due, locks)) for due in DUE}
    per_due = (counts[DUE[2]] - counts[DUE[1]]) / (DUE[2] - DUE[1])
    fixed = counts[DUE[1]] - per_due * DUE[1]
    linear = all(counts[due] == fixed + per_due * due for due in DUE)
    figure(
        f"health sweep statements per due connection ({label}, {total:,} connections)",
        [per_due],
        "constant",
        linear,
        context=f"{counts} statements at {DUE} due, {fixed:.0f} fixed",
    )
    captured = sweep(owned, DUE[0], locks)
    # The due selection: every statement of the sweep ordered by the check time.
    selections = [
        q["sql"]
        for q in captured.captured_queries
        if "ORDER BY" in q["sql"] and "health_checked_at" in q["sql"].split("ORDER BY")[-1]
    ]
    plans = [explain(sql) for sql in selections]
    table = owned.model._meta.db_table
    indexed = bool(plans) and not any(full_scan(plan, table) for plan in plans)

    def select() -> None:
        with connection.cursor() as cursor:
            for sql in selections:
                cursor.execute(sql)
                cursor.fetchall()

    text_figure(
        f"health sweep due selection ({label}, {total:,} connections)",
        "index" if indexed else "full scan",
        "index",
        indexed,
        f"{median_ms(select, 5):.1f} ms per selection ({len(selections)} statement(s))",
    )
    for plan in plans:
        detail(plan)
    held = any(locks)
    text_figure(
        f"health sweep row lock during the token call ({label})",
        "held" if held else "none",
        "none",
        not held,
        f"{sum(locks)} of {len(locks)} token requests made inside a transaction",
    )
