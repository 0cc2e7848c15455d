"""Delete old finished outbox rows so the table does not grow without bound."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...outbox import purge


class Command(BaseCommand):
    help = (
        "Delete outbox rows created more than DAYS days ago that are finished (delivered, "
        "dead, expired, cancelled, no connection) or parked. Pending rows are never deleted."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            required=True,
            metavar="DAYS",
            help="age in days (fractions allowed) of the finished rows to delete",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"]
        if days < 0:
            raise CommandError("--older-than must be zero or more days.")
        deleted = purge(timedelta(days=days))
        self.stdout.write(
            self.style.SUCCESS(f"Deleted {deleted} outbox row(s) older than {days:g} day(s).")
        )
