"""Queue a test event for one connection, to see it arrive in the customer's Datadog."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...models import Connection, ConnectionStatus

DEFAULT_TITLE = "Test event from the Datadog integration"
DEFAULT_TEXT = "If you can read this in Datadog's Event Explorer, the integration works."


class Command(BaseCommand):
    help = "Queue a test event for connection ID; a django-q2 worker delivers it."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("id", type=int, metavar="ID", help="connection id")
        parser.add_argument(
            "--title", default=DEFAULT_TITLE, help="event title (default: %(default)s)"
        )
        parser.add_argument(
            "--text", default=DEFAULT_TEXT, help="event text (default: %(default)s)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from ...tracking import send_event

        connection = Connection.objects.filter(pk=options["id"]).first()
        if connection is None:
            raise CommandError(f"No Datadog connection with id {options['id']}.")
        if connection.status != ConnectionStatus.ACTIVE:
            raise CommandError(
                f"#{connection.pk} {connection.label} is {connection.get_status_display()}, "
                "not active: "
                f"nothing would be delivered. {connection.status_reason}".strip()
            )
        row = send_event(connection, title=options["title"], text=options["text"])
        if row is None:
            raise CommandError("The test event could not be queued (see the logs).")
        self.stdout.write(
            self.style.SUCCESS(
                f"Queued test event (outbox #{row.pk}) for #{connection.pk} {connection.label}. A "
                "django-q2 worker delivers it within seconds; follow it in the outbox admin."
            )
        )
