"""Create or update the django-q2 schedules the app needs (safe to run on every deploy)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ...schedules import ensure_schedules


class Command(BaseCommand):
    help = "Create or update every django-q2 schedule the Datadog integration needs."

    def handle(self, *args: Any, **options: Any) -> None:
        for spec, result in ensure_schedules():
            every = f"every {spec.minutes} min" if spec.minutes else "hourly"
            self.stdout.write(f"{result:>9}  {spec.name} ({every}): {spec.purpose}")
        self.stdout.write(
            self.style.SUCCESS("Schedules are up to date; a running qcluster picks them up.")
        )
