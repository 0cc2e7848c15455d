"""Health-check connections now (the schedule checks each one daily)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from ...connections import check_health
from ...models import Connection
from ..lifecycle import Result, add_selection_arguments, run_each, selected_connections


class Command(BaseCommand):
    help = (
        "Check connections: the owner still exists, the token refreshes, Datadog accepts the "
        "API key. Exits non-zero if any connection is unhealthy."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_selection_arguments(parser, all_help="every connection not revoked")

    def handle(self, *args: Any, **options: Any) -> None:
        checkable = Connection.objects.not_ended()
        run_each(self, selected_connections(options, checkable), _check, done="Healthy:")


def _check(connection: Connection) -> Result:
    report = check_health(connection)
    return report.healthy, report.message
