"""Every connection at a glance, the outbox backlog, open site breakers, open alarms and
missing schedules."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from collections import Counter
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand

from ...models import Connection, ConnectionStatus
from ...report import StatusReport

SECRET_FIELDS = ("access_token", "refresh_token", "api_key")
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
        queryset = Connection.objects.defer(*SECRET_FIELDS).prefetch_related("owner")
        if options["status"]:
            queryset = queryset.filter(status=options["status"])
        rows = [_row(connection) for connection in queryset.order_by("pk")]
        report = StatusReport()
        alarms = [
            {"code": a.code, "message": a.message, "count": a.count,
             "last": _time(a.last_raised_at)}
            for a in report.alarms
        ]  # fmt: skip
        missing = [spec.name for spec in report.schedules_missing]
        outbox = report.backlog
        waiting = outbox.waiting_seconds(report.now)
        tripped = [
            {"domain": b.domain, "open_until": b.open_until.isoformat() if b.open_until else None,
             "failures": b.failures, "last_error": b.last_error}
            for b in report.open_breakers
        ]  # fmt: skip
        if options["json"]:
            by_status = dict(Counter(row["status"] for row in rows))
            document = {
                "connections": rows,
                "by_status": by_status,
                "alarms": alarms,
                "schedules_missing": missing,
                "outbox": {"by_status": outbox.by_status, "oldest_due_seconds": waiting},
                "site_breakers_open": tripped,
            }
            self.stdout.write(json.dumps(document, indent=2))
            return
        self._table(rows)
        self.stdout.write(_outbox_line(outbox.by_status, waiting))
        if tripped:
            self.stdout.write(self.style.WARNING("Site breakers open (nothing is sent there):"))
            for b in tripped:
                self.stdout.write(
                    f"  {b['domain']}: open until {b['open_until']} after {b['failures']} "
                    f"failures ({b['last_error']})"
                )
        for alarm in alarms:
            self.stdout.write(
                self.style.ERROR(f"ALARM {alarm['code']} (x{alarm['count']}): {alarm['message']}")
            )
        if missing:
            self.stdout.write(
                self.style.WARNING(
                    f"Schedules missing or outdated: {', '.join(missing)}. "
                    "Run manage.py datadog_partner_schedule."
                )
            )

    def _table(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            self.stdout.write("No Datadog connections.")
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


def _row(connection: Connection) -> dict[str, Any]:
    return {
        "id": connection.pk,
        "status": connection.status,
        "status_reason": connection.status_reason,
        "connection": connection.label,
        "domain": connection.domain,
        "org": connection.dd_org_name or connection.dd_org_id or None,
        "owner": connection.owner_name,
        "api_key": f"…{connection.api_key_last4}" if connection.api_key_last4 else None,
        "token_expires": _time(connection.expires_at),
        "last_success": _time(connection.last_success_at),
        "last_error": (
            f"{connection.last_error_code} {_time(connection.last_error_at)}"
            if connection.last_error_code
            else None
        ),
        "health_checked": _time(connection.health_checked_at),
    }


def _outbox_line(by_status: dict[str, int], waiting: float | None) -> str:
    if not by_status:
        return "Outbox: empty."
    counts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    due = "" if waiting is None else f"; the oldest due item has waited {waiting:.0f} s"
    return f"Outbox: {counts}{due}."


def _time(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M") if value else None
