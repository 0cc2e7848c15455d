"""Scale of delivery on a big backlog: ``claim()`` of one 200-row batch (with the plans
of its statements) and the sweeper's and monitoring's periodic counts."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.figures import detail, figure
from bench.plans import StatementTimes, clone, explain, median_ms
from bench.tenants import clear, tenant

GOAL_CLAIM_MS = 5.0
GOAL_COUNT_MS = 20.0


def backlog(rows: int) -> None:
    """``rows`` due, unclaimed, already routed outbox rows of one connection."""
    from django_datadog_partner.models import OutboxEvent
    from django_datadog_partner.tracking import send_event

    clear()
    _, conn = tenant(0)
    template = send_event(conn, title="Order 1 updated", text="status: paid")
    assert template is not None
    OutboxEvent.objects.filter(pk=template.pk).update(prepared=True)
    clone(OutboxEvent, template.pk, rows - 1, {})


def run(label: str, rows: int) -> None:
    from django_datadog_partner import delivery, outbox
    from django_datadog_partner.conf import app_settings
    from django_datadog_partner.report import report_outbox_health

    backlog(rows)
    batch = app_settings.DELIVERY_BATCH_SIZE
    where = f"{label}, {rows:,} due rows"
    claims: list[int] = []
    claim_ms = median_ms(lambda: claims.append(len(delivery.claim(batch)[1])), 5)
    assert set(claims) == {batch}, claims
    times = StatementTimes()
    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(times):
        delivery.claim(batch)
    statements = [
        q
        for q in captured.captured_queries
        if q["sql"].split(" ", 1)[0].upper() in ("SELECT", "UPDATE")
    ]
    in_db = sum(times.seconds) * 1000
    figure(
        f"claim() of a {batch}-row batch ({where})",
        [claim_ms],
        f"< {GOAL_CLAIM_MS:.0f} ms",
        claim_ms < GOAL_CLAIM_MS,
        unit=" ms",
        context=f"{len(captured.captured_queries)} statements, {in_db:.1f} ms of them "
        "in the database (one captured call)",
    )
    for n, statement in enumerate(statements, 1):
        detail(f"statement {n}: {statement['sql']}")
        detail("  " + explain(statement["sql"]).replace("\n", "\n  "))
    counts = {
        "sweeper count_due()": lambda: outbox.count_due(at_most=outbox.COUNT_CAP),
        "monitoring report_outbox_health()": report_outbox_health,
    }
    for name, op in counts.items():
        ms = median_ms(op, 3)
        figure(
            f"periodic {name} ({where})",
            [ms],
            f"< {GOAL_COUNT_MS:.0f} ms",
            ms < GOAL_COUNT_MS,
            unit=" ms",
        )
    clear()
