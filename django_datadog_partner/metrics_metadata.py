"""The ``metadata.csv`` of a Datadog listing, from the metrics the host declares
(``METRICS``) and the heartbeat (``HEARTBEAT_METRIC``, the listing's "metric check"), with
every value ``ddev validate metadata`` (DataDog/integrations-core) would refuse warned.

Columns, in Datadog's order: metric_name, metric_type (gauge, count, rate), interval,
unit_name, per_unit_name, description (ASCII, no ``|``, at most 400 characters),
orientation (1: higher is better, -1, 0), integration, short_name, curated_metric.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from typing import Any

from django.db import DatabaseError

from . import payloads
from .conf import app_settings
from .models import OutboxEvent, OutboxKind

COLUMNS = (
    "metric_name", "metric_type", "interval", "unit_name", "per_unit_name", "description",
    "orientation", "integration", "short_name", "curated_metric",
)  # fmt: skip
METRIC_KEYS = {
    "type", "unit", "per_unit", "description", "orientation", "short_name", "interval",
    "curated_metric",
}  # fmt: skip
METADATA_TYPES = ("gauge", "count", "rate")
CURATED = frozenset({"cpu", "memory"})
DESCRIPTION_LIMIT = 400
TIME_UNITS = frozenset(
    ("nanosecond", "microsecond", "millisecond", "second", "minute", "hour", "day", "week")
)
#: Common units of Datadog's catalogue; another unit is warned about, to be checked by hand.
KNOWN_UNITS = TIME_UNITS | frozenset(
    """bit byte kibibyte mebibyte gibibyte tebibyte kilobyte megabyte gigabyte terabyte
    fraction percent permille connection request response process thread file buffer
    packet message payload error event item record object operation transaction query row
    hit miss eviction key command page read write occurrence time unit host node service
    task worker job resource document session user check attempt entry execution
    invocation run span exception alert token dollar cent microdollar nanodollar euro
    pound penny yen build container device update method email view location""".split()  # noqa: SIM905
)
OUTBOX_SCAN = 5000  # the newest metric rows read for names sent but not declared


def integration_name() -> str:
    return re.sub(r"[^a-z0-9]+", "_", app_settings.SOURCE_TYPE_NAME.lower()).strip("_")


def metadata_rows() -> tuple[list[dict[str, str]], list[str]]:
    """The rows of ``metadata.csv`` (the heartbeat first unless declared) and warnings."""
    declared: dict[str, Mapping[str, Any]] = dict(app_settings.METRICS)
    heartbeat = app_settings.HEARTBEAT_METRIC
    if heartbeat and heartbeat not in declared:
        declared = {heartbeat: heartbeat_declaration(), **declared}
    warnings = metric_problems(declared)
    if not heartbeat and declared:
        warnings.append(
            "HEARTBEAT_METRIC is off: a listing that sends metrics must name a metric check "
            "sent on every run."
        )
    prefixes = {name.split(".", 1)[0] for name in declared}
    if len(prefixes) > 1:
        warnings.append(
            f"The metrics do not share one prefix ({', '.join(sorted(prefixes))}): a listing "
            "declares one metric prefix, e.g. your integration's name."
        )
    return [_row(name, entry) for name, entry in declared.items()], warnings


def heartbeat_declaration() -> dict[str, Any]:
    seconds = int(app_settings.HEARTBEAT_INTERVAL)
    return {
        "type": "gauge",
        "description": f"1 for each connected organization, sent every {seconds} seconds "
        "while the integration is connected (the integration's metric check).",
        "short_name": "heartbeat",
    }


def _row(name: str, entry: Mapping[str, Any]) -> dict[str, str]:
    curated = entry.get("curated_metric") or ()
    return {
        "metric_name": name,
        "metric_type": str(entry.get("type", "gauge")),
        "interval": str(entry.get("interval") or ""),
        "unit_name": str(entry.get("unit") or ""),
        "per_unit_name": str(entry.get("per_unit") or ""),
        "description": str(entry.get("description") or ""),
        "orientation": str(entry.get("orientation", 0)),
        "integration": integration_name(),
        "short_name": str(entry.get("short_name") or ""),
        "curated_metric": curated if isinstance(curated, str) else "|".join(curated),
    }


def metric_problems(declared: Mapping[str, Any]) -> list[str]:
    """Every ``METRICS`` value ``ddev validate metadata`` would refuse (or should check)."""
    problems = []
    for name, entry in declared.items():
        where = f"METRICS[{name!r}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where} must be a dict (type, unit, description...).")
            continue
        row = _row(name, entry)
        if not payloads.METRIC_NAME.match(name) or len(name) > payloads.METRIC_NAME_LIMIT:
            problems.append(f"{where}: not a metric name (a letter, then letters, digits, _ .).")
        if unknown := sorted(set(entry) - METRIC_KEYS):
            problems.append(f"{where}: unknown keys {unknown}; use {sorted(METRIC_KEYS)}.")
        if row["metric_type"] not in METADATA_TYPES:
            problems.append(f"{where}: type must be one of {', '.join(METADATA_TYPES)}.")
        if row["orientation"] not in ("-1", "0", "1"):
            problems.append(f"{where}: orientation is 1 (higher is better), -1 or 0.")
        if row["interval"] and not row["interval"].isdigit():
            problems.append(f"{where}: interval is a whole number of seconds.")
        for unit in (row["unit_name"], row["per_unit_name"]):
            if unit and unit not in KNOWN_UNITS:
                problems.append(f"{where}: check that {unit!r} is one of Datadog's units.")
        if row["unit_name"] in TIME_UNITS and row["per_unit_name"] in TIME_UNITS:
            problems.append(f"{where}: a time per time unit is refused; use 'fraction'.")
        if not set(filter(None, row["curated_metric"].split("|"))) <= CURATED:
            problems.append(f"{where}: curated_metric takes 'cpu' and 'memory' only.")
        problems += _description_problems(where, row["description"])
    return problems


def _description_problems(where: str, description: str) -> list[str]:
    if not description:
        return [f"{where}: add a description (Datadog's metric summary shows it)."]
    if "|" in description or not description.isascii():
        return [f"{where}: the description must be ASCII, without '|'."]
    if len(description) > DESCRIPTION_LIMIT:
        return [f"{where}: the description exceeds {DESCRIPTION_LIMIT} characters."]
    return []


def metadata_csv(rows: list[dict[str, str]]) -> str:
    """``metadata.csv``: the columns in Datadog's order, rows sorted by metric name."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda row: row["metric_name"]))
    return out.getvalue()


def undeclared_metrics(rows: list[dict[str, str]]) -> list[str]:
    """Metric names in the newest outbox rows that ``metadata.csv`` does not list."""
    newest = OutboxEvent.objects.filter(kind=OutboxKind.METRIC).order_by("-pk")
    try:
        names = set(newest.values_list("payload__metric", flat=True)[:OUTBOX_SCAN])
    except DatabaseError:  # not migrated yet: the command runs before migrate too
        return []
    missing = sorted(str(n) for n in names - {row["metric_name"] for row in rows} if n)
    if not missing:
        return []
    return [f"Sent but not declared in METRICS (so not in metadata.csv): {', '.join(missing)}."]
