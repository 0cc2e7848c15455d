"""Taking a payment: the order changes (an event) plus a metric and a log for Datadog."""

from __future__ import annotations

from django.db import transaction

from django_datadog_partner.tracking import send_log, send_metric

from .models import Order

AMOUNT_METRIC = "example_shop.payment.amount"


def mark_paid(order: Order) -> None:
    """All in one transaction: the outbox rows commit with the order, or not at all."""
    with transaction.atomic():
        order.status = Order.Status.PAID
        order.save(update_fields=["status", "updated_at"])
        tags = [f"organisation:{order.organisation_id}", f"customer:{order.customer_id}"]
        send_metric(order.organisation, AMOUNT_METRIC, float(order.total), tags=tags)
        send_log(
            order.organisation,
            f"{order} paid: {order.total}",
            tags=tags,
            attributes={"order_number": order.number, "amount": str(order.total)},
        )
