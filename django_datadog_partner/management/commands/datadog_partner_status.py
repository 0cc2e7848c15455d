"""Every connection at a glance, the outbox backlog, open site breakers, open alarms and
missing schedules."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand

from ...models import ConnectionStatus
from ...report import StatusReport

COLUMNS = ("id", "status", "connection", "api_key", "token_expires", "last_success",
           "last_error", "health_checked")  # fmt: skip


class Command(BaseCommand):
    help = "Show every Datadog connection, open configuration alarms and missing schedules."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument(
            "--status", choices=ConnectionStatus.values, help="only connections in this status"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = StatusReport()
        document = report.document(status=options["status"])
        if options["json"]:
            self.stdout.write(json.dumps(document, indent=2))
            return
        self._table(document["connections"], options["status"], report)
        outbox = document["outbox"]
        self.stdout.write(_outbox_line(outbox["by_status"], outbox["oldest_due_seconds"]))
        if document["site_breakers_open"]:
            self.stdout.write(self.style.WARNING("Site breakers open (nothing is sent there):"))
            for b in document["site_breakers_open"]:
                self.stdout.write(
                    f"  {b['domain']}: open until {b['open_until']} after {b['failures']} "
                    f"failures ({b['last_error']})"
                )
        for alarm in document["alarms"]:
            self.stdout.write(
                self.style.ERROR(f"ALARM {alarm['code']} (x{alarm['count']}): {alarm['message']}")
            )
        if document["schedules_missing"]:
            self.stdout.write(
                self.style.WARNING(
                    f"Schedules missing or outdated: {', '.join(document['schedules_missing'])}. "
                    "Run manage.py datadog_partner_schedule."
                )
            )

    def _table(self, rows: list[dict[str, Any]], status: str | None, report: StatusReport) -> None:
        if not rows:
            self.stdout.write(_none_shown(status, report.connections_by_status))
            return
        cells = [[str(row[c] if row[c] is not None else "-") for c in COLUMNS] for row in rows]
        widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(COLUMNS)]
        self.stdout.write(
            "  ".join(c.upper().ljust(w) for c, w in zip(COLUMNS, widths, strict=True))
        )
        for line in cells:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))
        counts = Counter(row["status"] for row in rows)
        self.stdout.write(
            f"{len(rows)} connection(s): "
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        )


def _none_shown(status: str | None, counts: dict[str, int]) -> str:
    """Nothing to list: say what exists when a ``--status`` filter matched nothing."""
    if status is None or not counts:
        return "No Datadog connections."
    others = ", ".join(f"{n} {other}" for other, n in sorted(counts.items()))
    return f"No {status} connection; {sum(counts.values())} in other statuses: {others}."


def _outbox_line(by_status: dict[str, int], waiting: float | None) -> str:
    if not by_status:
        return "Outbox: empty."
    counts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    due = "" if waiting is None else f"; the oldest due item has waited {waiting:.0f} s"
    return f"Outbox: {counts}{due}."
