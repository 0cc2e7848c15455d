"""How a claim's lease is stored on PostgreSQL: the outbox leaves room on its pages, so
leasing a row writes its new version on the same page (a HOT update: no index entries)."""

from __future__ import annotations

import pytest
from django.db import connection

from django_datadog_partner import delivery
from django_datadog_partner.models import OutboxEvent
from django_datadog_partner.testing import make_connection
from django_datadog_partner.tracking import send_event

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def pages(ids: list[int]) -> dict[int, int]:
    """The heap page each row's current version is on."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, (ctid::text::point)[0]::int FROM datadog_partner_outboxevent "
            "WHERE id = ANY(%s)",
            [ids],
        )
        return dict(cursor.fetchall())


def test_leasing_a_batch_keeps_every_row_on_its_page(org):
    if connection.vendor != "postgresql":
        pytest.skip("only PostgreSQL has a fillfactor; run with DATABASE_URL=postgres://…")
    conn = make_connection(org)
    for n in range(400):  # many pages: at a fillfactor of 100 all but the last are full
        send_event(conn, title=f"Order {n}", text="status: paid " + "x" * 200)
    ids = list(OutboxEvent.objects.order_by("pk").values_list("pk", flat=True))
    before = pages(ids)
    assert len(set(before.values())) > 10

    _, rows = delivery.claim(200)

    leased = [row.pk for row in rows]
    assert len(leased) == 200
    after = pages(leased)
    assert {pk: after[pk] for pk in leased} == {pk: before[pk] for pk in leased}
