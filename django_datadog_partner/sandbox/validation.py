"""Light, hand-written checks of intake bodies, following Datadog's OpenAPI schemas.

Fatal problems (wrong types, missing required fields) make the sandbox answer 400 as
Datadog does; the full OpenAPI validation of what the project sends lives in the tests.
Each function returns the list of problems; empty means valid.
"""

from __future__ import annotations

from typing import Any

EVENT_ALERT_TYPES = {
    "error", "warning", "info", "success", "user_update", "recommendation", "snapshot",
}  # fmt: skip
EVENT_PRIORITIES = {"normal", "low", None}
EVENT_TEXT_MAX = 4000
AGGREGATION_KEY_MAX = 100
METRIC_TYPES = {0, 1, 2, 3}
POINT_MAX_AGE = 3600
POINT_MAX_FUTURE = 600
CHECK_REQUIRED = ("check", "status", "tags", "host_name")
CHECK_STATUSES = {0, 1, 2, 3}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _typed(obj: dict[str, Any], where: str, **expected: str) -> list[str]:
    """Type problems of optional fields: ``expected`` maps field -> str|int|number|tags."""
    checks = {"str": lambda v: isinstance(v, str), "int": _is_int, "tags": _is_str_list}
    return [
        f"{where}.{name} must be {kind if kind != 'tags' else 'a list of strings'}"
        for name, kind in expected.items()
        if name in obj and obj[name] is not None and not checks[kind](obj[name])
    ]


def event_problems(body: Any) -> list[str]:
    """``EventCreateRequest`` (v1): ``title`` and ``text`` required."""
    if not isinstance(body, dict):
        return ["the event must be a JSON object"]
    problems = [f"event.{name} is required" for name in ("title", "text") if name not in body]
    problems += _typed(
        body,
        "event",
        title="str",
        text="str",
        aggregation_key="str",
        host="str",
        device_name="str",
        source_type_name="str",
        date_happened="int",
        related_event_id="int",
        tags="tags",
    )
    key = body.get("aggregation_key")
    if isinstance(key, str) and len(key) > AGGREGATION_KEY_MAX:
        problems.append(f"event.aggregation_key is longer than {AGGREGATION_KEY_MAX}")
    if "alert_type" in body and body["alert_type"] not in EVENT_ALERT_TYPES:
        problems.append("event.alert_type is not one of " + ", ".join(sorted(EVENT_ALERT_TYPES)))
    if "priority" in body and body["priority"] not in EVENT_PRIORITIES:
        problems.append("event.priority must be normal or low")
    return problems


def series_problems(body: Any) -> list[str]:
    """``MetricPayload`` (v2): ``series`` of ``MetricSeries`` with ``metric`` and ``points``."""
    if not isinstance(body, dict) or not isinstance(body.get("series"), list):
        return ["the payload must be an object with a 'series' list"]
    problems: list[str] = []
    for i, series in enumerate(body["series"]):
        where = f"series[{i}]"
        if not isinstance(series, dict):
            problems.append(f"{where} must be an object")
            continue
        if not isinstance(series.get("metric"), str) or not series["metric"]:
            problems.append(f"{where}.metric is required")
        points = series.get("points")
        if not isinstance(points, list):
            problems.append(f"{where}.points is required")
            points = []
        for j, point in enumerate(points):
            if not isinstance(point, dict):
                problems.append(f"{where}.points[{j}] must be an object")
                continue
            if "timestamp" in point and not _is_int(point["timestamp"]):
                problems.append(f"{where}.points[{j}].timestamp must be an integer")
            if "value" in point and not _is_number(point["value"]):
                problems.append(f"{where}.points[{j}].value must be a number")
        problems += _typed(series, where, unit="str", source_type_name="str", interval="int")
        problems += _typed(series, where, tags="tags")
        if "type" in series and series["type"] not in METRIC_TYPES:
            problems.append(f"{where}.type must be 0, 1, 2 or 3")
        for resource in series.get("resources") or []:
            if not isinstance(resource, dict):
                problems.append(f"{where}.resources must be objects")
    return problems


def stale_points(body: dict[str, Any], now: float) -> list[str]:
    """Non-fatal: points Datadog would drop (older than 1 hour, more than 10 min ahead)."""
    notes = []
    for series in body["series"]:
        for point in series.get("points") or []:
            timestamp = point.get("timestamp")
            if (
                _is_int(timestamp)
                and not now - POINT_MAX_AGE <= timestamp <= now + POINT_MAX_FUTURE
            ):
                notes.append(f"Point of {series.get('metric')} at {timestamp} is out of range")
    return notes


def check_problems(body: Any) -> list[str]:
    """``ServiceChecks`` (v1): a list of ``ServiceCheck`` with ``check``, ``status`` 0-3,
    ``tags`` and ``host_name`` required."""
    if not isinstance(body, list):
        return ["the payload must be a list of service checks"]
    problems: list[str] = []
    for i, check in enumerate(body):
        where = f"check[{i}]"
        if not isinstance(check, dict):
            problems.append(f"{where} must be an object")
            continue
        problems += [f"{where}.{name} is required" for name in CHECK_REQUIRED if name not in check]
        status = check.get("status")
        if "status" in check and not (_is_int(status) and status in CHECK_STATUSES):
            problems.append(f"{where}.status must be 0, 1, 2 or 3")
        problems += _typed(check, where, check="str", host_name="str", message="str")
        problems += _typed(check, where, timestamp="int", tags="tags")
    return problems


def log_problems(entries: list[Any]) -> list[str]:
    """``HTTPLogItem``: an object with a ``message`` string; other attributes are free."""
    problems: list[str] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"log[{i}] must be an object")
            continue
        if not isinstance(entry.get("message"), str):
            problems.append(f"log[{i}].message is required and must be a string")
        problems += _typed(entry, f"log[{i}]", ddsource="str", ddtags="str", hostname="str")
        problems += _typed(entry, f"log[{i}]", service="str")
    return problems
