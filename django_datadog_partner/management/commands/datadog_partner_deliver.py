"""Deliver due telemetry now, without a django-q2 worker (cron, or after an outage)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from ...delivery import Summary, drain
from ...outbox import count_due


class Command(BaseCommand):
    help = (
        "Send every due outbox row to Datadog now, printing progress and a summary. "
        "Safe to run beside workers: rows are leased, never sent by two runs at once."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--max-seconds",
            type=float,
            default=None,
            help="stop claiming new rows after this many seconds",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verbose = options["verbosity"] >= 1
        if verbose:
            self.stdout.write(f"{count_due()} row(s) due.")

        def progress(summary: Summary) -> None:
            if verbose:
                self.stdout.write(f"  … {summary}")

        summary = drain(time_budget=options["max_seconds"], progress=progress)
        self.stdout.write(self.style.SUCCESS(f"Done: {summary}."))
        left = count_due()
        if left:
            self.stdout.write(self.style.WARNING(f"{left} row(s) still due (time budget)."))
