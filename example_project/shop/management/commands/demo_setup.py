"""Create the demo users, organisations, customers and orders (idempotent) and print them."""

from decimal import Decimal
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from shop.models import Customer, Order, Organisation

USERS = [
    # username, password, staff, organisations
    ("alice", "alice-demo", True, ["Acme Shop"]),
    ("bob", "bob-demo", False, ["Acme Shop", "Globex"]),
]
ORDERS = {
    "Acme Shop": [("A-1001", "Ada Lovelace", "120.00"), ("A-1002", "Grace Hopper", "49.90")],
    "Globex": [("G-2001", "Hank Scorpio", "999.00")],
}


class Command(BaseCommand):
    help = "Create the example shop's demo data (safe to run again) and print the demo users."

    def handle(self, *args: Any, **options: Any) -> None:
        organisations = {name: Organisation.objects.get_or_create(name=name)[0] for name in ORDERS}
        for org_name, orders in ORDERS.items():
            organisation = organisations[org_name]
            for number, customer_name, total in orders:
                customer, _created = Customer.objects.get_or_create(
                    organisation=organisation, name=customer_name
                )
                Order.objects.get_or_create(
                    organisation=organisation,
                    number=number,
                    defaults={"customer": customer, "total": Decimal(total)},
                )
        User = get_user_model()
        self.stdout.write("Demo users (username / password):")
        for username, password, staff, member_of in USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.is_staff = user.is_superuser = staff
                user.save()
            for name in member_of:
                organisations[name].members.add(user)
            role = "staff, admin" if staff else "shop user"
            self.stdout.write(f"  {username} / {password}  ({role}; {', '.join(member_of)})")
        if apps.is_installed("django_datadog_partner.sandbox"):
            self._sandbox_user()

    def _sandbox_user(self) -> None:
        from django_datadog_partner.sandbox.models import SandboxOrg, SandboxUser

        org, _created = SandboxOrg.objects.get_or_create(name="Acme on Datadog")
        SandboxUser.objects.get_or_create(org=org, name="Dana (Datadog admin)")
        self.stdout.write(
            "Sandbox Datadog user: Dana (Datadog admin), org 'Acme on Datadog' "
            "(pick it on the sandbox sign-in page, or create another)."
        )
