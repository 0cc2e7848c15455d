"""The shop's own tests, as a host project writes them: ``manage.py test --debug-mode shop``
(offline the shop serves http, which the package accepts only with DEBUG on).

``FakeDatadog`` stands in for Datadog (no server, no network); ``delivery.drain()`` does what
the qcluster would after the commit.
"""

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.test import TestCase

from django_datadog_partner import delivery
from django_datadog_partner.models import OutboxEvent
from django_datadog_partner.testing import FakeDatadog

from .models import Customer, Order, Organisation


class ShopTests(TestCase):
    def setUp(self) -> None:
        self.datadog = FakeDatadog().start()
        self.addCleanup(self.datadog.stop)
        self.user = get_user_model().objects.create_user("bob", password="pw")
        self.acme = Organisation.objects.create(name="Acme Shop")
        self.acme.members.add(self.user)
        self.globex = Organisation.objects.create(name="Globex")
        grace = Customer.objects.create(organisation=self.acme, name="Grace Hopper")
        self.order = Order.objects.create(
            organisation=self.acme, customer=grace, number="A-1002", total=Decimal("49.90")
        )
        OutboxEvent.objects.all().delete()
        self.client.force_login(self.user)

    def messages(self, response: Any) -> list[str]:
        return [str(message) for message in response.context["messages"]]

    def test_payment_says_what_was_sent_and_datadog_gets_names_not_ids(self) -> None:
        connection = self.datadog.connection(owner=self.acme)
        response = self.client.post(f"/orders/{self.order.pk}/pay/", follow=True)
        assert self.messages(response) == [
            "Payment of 49.90 taken: Order A-1002 is now Paid. Acme Shop's Datadog receives "
            "an event, the metric example_shop.payment.amount and a log."
        ]
        delivery.drain()
        (event,) = self.datadog.events(self.datadog.org_of(connection))
        assert event["title"] == "Order updated: A-1002"
        assert "customer: Grace Hopper" in event["text"].splitlines()
        (series,) = self.datadog.series()
        assert series["metric"] == "example_shop.payment.amount"
        assert self.datadog.logs()[0]["message"] == "Order A-1002 paid: 49.90"

        again = self.client.post(f"/orders/{self.order.pk}/pay/", follow=True)
        assert self.messages(again) == ["Order A-1002 is Paid: no payment taken."]

    def test_without_a_connection_the_shop_says_nothing_reaches_datadog(self) -> None:
        response = self.client.post(f"/orders/{self.order.pk}/pay/", follow=True)
        (message,) = self.messages(response)
        assert "Acme Shop has no active Datadog connection" in message

    def test_a_new_order_finds_or_creates_its_customer(self) -> None:
        self.datadog.connection(owner=self.acme)
        form = {"organisation": self.acme.pk, "customer": "Ada Lovelace", "number": "A-1003",
                "total": "120.00"}  # fmt: skip
        response = self.client.post("/orders/new/", form, follow=True)
        order = Order.objects.get(number="A-1003")
        self.assertRedirects(response, f"/orders/{order.pk}/")
        assert self.messages(response) == [
            "Order A-1003 created for Ada Lovelace (120.00). Acme Shop's Datadog receives an event."
        ]
        assert order.customer.organisation == self.acme
        self.client.post("/orders/new/", {**form, "number": "A-1004", "customer": "Ada Lovelace"})
        assert Customer.objects.filter(name="Ada Lovelace").count() == 1
        delivery.drain()
        titles = sorted(event["title"] for event in self.datadog.events())  # sent side by side
        assert titles == ["Order created: A-1003", "Order created: A-1004"]

    def test_a_taken_number_or_a_foreign_organisation_is_refused(self) -> None:
        form = {"organisation": self.acme.pk, "customer": "Ada", "number": "A-1002",
                "total": "1.00"}  # fmt: skip
        taken = self.client.post("/orders/new/", form)
        self.assertContains(taken, "Acme Shop already has an order A-1002.", status_code=400)
        foreign = self.client.post("/orders/new/", {**form, "organisation": self.globex.pk})
        assert foreign.status_code == 400
        assert Order.objects.count() == 1
        self.assertNotContains(self.client.get("/orders/new/"), "Globex")
