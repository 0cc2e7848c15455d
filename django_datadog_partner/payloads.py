"""Datadog bodies for events, metric points, log entries and service checks: pure functions
within Datadog's limits (``packing`` puts them into request bodies).

Every builder returns a plain dict that validates against Datadog's OpenAPI documents
(``EventCreateRequest``, ``MetricSeries``, ``HTTPLogItem``, ``ServiceCheck``). As sent, an
event carries its outbox id on the last line of its text and a log entry as an attribute, so
an unavoidable duplicate is recognisable in Datadog without an unbounded tag. Encoding is
canonical (sorted keys) so every retry sends identical bytes.

Longer than 300 lines for one concern, Datadog's body rules: the limits (Datadog's
documented ones, as constants at the top) and the four builders that apply them share the
truncation, tag and masking helpers below; packing the bodies into requests is apart
(``packing``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import models

EVENT_TEXT_LIMIT = 4000
AGGREGATION_KEY_LIMIT = 100
TITLE_LIMIT = 200
SHRUNK_TITLE_LIMIT = 100
SHRUNK_TEXT_LIMIT = 1000
TAG_LIMIT = 200
FIELD_VALUE_LIMIT = 200
METRIC_NAME_LIMIT = 200
CHECK_MESSAGE_LIMIT = 500  # Datadog shows the first 500 characters of a check's message
DEDUPE_KEY = "outbox_id"
MASK = "****"

# Datadog's logs intake: 1 MB per entry (longer ones are truncated by Datadog), 5 MB
# uncompressed and 1,000 entries per request. "MB" read as the smaller, decimal value.
LOG_ENTRY_MAX_BYTES = 1_000_000
LOGS_MAX_BYTES = 5_000_000
LOGS_MAX_ENTRIES = 1000
# Room left in an entry for the outbox id attribute added when it is sent.
LOG_MARK_RESERVE = 40
# What the Datadog Agent puts where it cut a log message.
TRUNCATED = "...TRUNCATED..."
# Datadog's series intake: 512,000 bytes per request as sent, 5,242,880 decompressed; the
# Datadog Agent also sends at most 10,000 points per request.
SERIES_MAX_COMPRESSED = 512_000
SERIES_MAX_BYTES = 5_242_880
SERIES_MAX_POINTS = 10_000
# Service checks: Datadog documents no request limit; these stay far below what the
# Datadog Agent sends there (2.5 MB compressed, 4 MB uncompressed).
CHECKS_MAX_BYTES = 512_000
CHECKS_MAX_ENTRIES = 1000

ALERT_TYPES = ("error", "warning", "info", "success", "user_update", "recommendation", "snapshot")
PRIORITIES = ("normal", "low")
METRIC_TYPES = {"unspecified": 0, "count": 1, "rate": 2, "gauge": 3}
CHECK_STATUSES = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
LOG_RESERVED = frozenset(
    {"message", "ddsource", "ddtags", "service", "hostname", "status", "timestamp", DEDUPE_KEY}
)

# A field whose name contains one of these words is never shipped, whatever the options say.
SECRET_WORDS = frozenset(
    {"password", "passwd", "secret", "token", "key", "apikey", "credential", "credentials",
     "salt", "hash", "otp", "signature", "ssn", "cvv", "iban"}
)  # fmt: skip
TAG_DISALLOWED = re.compile(r"[^\w\-:./]")
CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")
_json_string = json.encoder.encode_basestring_ascii


@dataclass(frozen=True)
class FieldOptions:
    """Which of a model's fields the default event shows (``include=None``: all)."""

    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    mask: tuple[str, ...] = ()


@dataclass(frozen=True)
class Change:
    """What an event builder receives: one saved or deleted instance."""

    instance: models.Model
    action: str
    occurred_at: datetime
    update_fields: frozenset[str] | None = None
    options: FieldOptions = field(default_factory=FieldOptions)

    @property
    def label(self) -> str:
        return self.instance._meta.label_lower


# --- events ---------------------------------------------------------------------------------


def default_event(change: Change, *, source_type_name: str) -> dict[str, Any]:
    """Title from the model and ``str(instance)``; text lists the selected fields.

    The body ``event()`` would build, without its argument checks (nothing here comes from
    a caller) and with the tags normalized once per model, action and source. The host's
    save path writes the same event straight as JSON text (``default_event_stored``).
    """
    title, text, label, key = _default_parts(
        change.instance, change.action, change.update_fields, change.options
    )
    return {
        "title": title,
        "text": text,
        "tags": list(_default_tags(label, change.action, source_type_name)),
        "alert_type": "info",
        "date_happened": int(change.occurred_at.timestamp()),
        "source_type_name": source_type_name,
        "aggregation_key": key,
    }


def default_event_stored(
    instance: models.Model,
    action: str,
    occurred_at: datetime,
    update_fields: frozenset[str] | None,
    options: FieldOptions,
    *,
    source_type_name: str,
) -> str:
    """``json.dumps(default_event(Change(...)))``, the text the outbox stores, made
    directly: the save path builds no ``Change`` and no dict, and runs no general JSON
    encoder (together most of the cost of the default event)."""
    title, text, label, key = _default_parts(instance, action, update_fields, options)
    return (
        f'{{"title": {_json_string(title)}, "text": {_json_string(text)}, '
        f"{_default_json(label, action, source_type_name)}"
        f'"date_happened": {int(occurred_at.timestamp())}, '
        f'"source_type_name": {_json_string(source_type_name)}, '
        f'"aggregation_key": {_json_string(key)}}}'
    )


def _default_parts(
    instance: models.Model,
    action: str,
    update_fields: frozenset[str] | None,
    options: FieldOptions,
) -> tuple[str, str, str, str]:
    """(title, text, model label, aggregation key) of the default event."""
    meta = instance._meta
    noun = str(meta.verbose_name).capitalize()
    title = f"{noun} {action}: {_without_noun(str(instance), noun)}"
    reads, prefixes = _text_plan(type(instance), options)
    text = "\n".join(map(str.__add__, prefixes, _shown(instance, reads)))
    if update_fields:
        text += ("\n" if text else "") + "Changed fields: " + ", ".join(sorted(update_fields))
    label = meta.label_lower
    return (
        _plain(title)[:TITLE_LIMIT],
        _plain(text or title)[:EVENT_TEXT_LIMIT],
        label,
        object_key(label, instance.pk),
    )


@functools.lru_cache(maxsize=256)
def _text_plan(
    model: type[models.Model], options: FieldOptions
) -> tuple[tuple[Read, ...], tuple[str, ...]]:
    """``_reads`` and the "name: " prefix of each of the event text's lines."""
    reads = _reads(model, options)
    return reads, tuple(read[4] for read in reads)


@functools.lru_cache(maxsize=1024)
def _default_json(label: str, action: str, source_type_name: str) -> str:
    """The default event's tags and alert type as JSON, with the separator after them."""
    tags = ", ".join(map(_json_string, _default_tags(label, action, source_type_name)))
    return f'"tags": [{tags}], "alert_type": "info", '


@functools.lru_cache(maxsize=1024)
def _default_tags(label: str, action: str, source_type_name: str) -> tuple[str, ...]:
    tags = [f"model:{label}", f"action:{action}", f"source:{source_type_name}"]
    return tuple(normalize_tags(tags))


def selected_fields(change: Change) -> list[tuple[str, str]]:
    """(name, display value) for concrete fields: options applied, secrets always left out.

    A relation shows ``str()`` of the related object when the instance has it loaded
    (assigned, ``select_related``), else its id: building an event never queries.
    """
    reads = _reads(type(change.instance), change.options)
    shown = _shown(change.instance, reads)
    return [(read[0], value) for read, value in zip(reads, shown, strict=True)]


#: How ``_shown`` reads one field: (name, attname, relation cache name or None, masked,
#: the event text's "name: " prefix).
Read = tuple[str, str, str | None, bool, str]


def _shown(instance: models.Model, reads: tuple[Read, ...]) -> list[str]:
    """The display values of ``reads``. This runs on the host's save path: values come
    from the instance's ``__dict__`` and its relation cache, as the fields' descriptors
    would give them (a deferred field, a cached ``None`` still go through the descriptor)."""
    loaded, related = instance.__dict__, instance._state.fields_cache
    shown = []
    for name, attname, cache_name, masked, _prefix in reads:
        if masked:
            shown.append(MASK)
            continue
        value = related.get(cache_name) if cache_name is not None else None
        if value is None:
            if cache_name is not None and cache_name in related:
                value = getattr(instance, name)
            else:
                value = loaded[attname] if attname in loaded else getattr(instance, attname)
        shown.append(_display(value))
    return shown


@functools.lru_cache(maxsize=256)
def _reads(model: type[models.Model], options: FieldOptions) -> tuple[Read, ...]:
    """``Read`` of each of ``field_plan``'s fields, computed once."""
    return tuple(
        (
            field.name,
            field.attname,
            field.cache_name if field.is_relation else None,
            masked,
            f"{field.name}: ",
        )
        for field, masked in field_plan(model, options)
    )


@functools.lru_cache(maxsize=256)
def field_plan(model: type[models.Model], options: FieldOptions) -> tuple[tuple[Any, bool], ...]:
    """(field, masked) of the fields a model's events show, computed once."""
    plan = []
    for model_field in model._meta.concrete_fields:
        name = model_field.name
        if options.include is not None and name not in options.include:
            continue
        if name in options.exclude or looks_secret(name):
            continue
        plan.append((model_field, name in options.mask))
    return tuple(plan)


def looks_secret(name: str) -> bool:
    """True when a word of the name (snake_case or camelCase) is in ``SECRET_WORDS``."""
    words = re.split(r"[_\W]+", CAMEL_BOUNDARY.sub("_", name).lower())
    return any(word in SECRET_WORDS for word in words)


def object_key(label: str, pk: Any) -> str:
    """A per-object aggregation key within 100 characters (hashed when it would not fit)."""
    key = f"{label}:{pk}"
    if len(key) <= AGGREGATION_KEY_LIMIT:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"{label[: AGGREGATION_KEY_LIMIT - 41]}:{digest}"


def event(
    *,
    title: str,
    text: str,
    tags: Iterable[str] = (),
    date_happened: datetime,
    source_type_name: str,
    alert_type: str = "info",
    aggregation_key: str | None = None,
    priority: str | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """An ``EventCreateRequest`` within Datadog's limits; user text is never markdown."""
    if alert_type not in ALERT_TYPES:
        raise ValueError(f"alert_type must be one of {', '.join(ALERT_TYPES)}.")
    if priority is not None and priority not in PRIORITIES:
        raise ValueError("priority must be 'normal', 'low' or None.")
    payload: dict[str, Any] = {
        "title": _plain(title)[:TITLE_LIMIT],
        "text": _plain(text)[:EVENT_TEXT_LIMIT],
        "tags": normalize_tags([*tags, f"source:{source_type_name}"]),
        "alert_type": alert_type,
        "date_happened": int(date_happened.timestamp()),
        "source_type_name": source_type_name,
    }
    if aggregation_key:
        payload["aggregation_key"] = aggregation_key[:AGGREGATION_KEY_LIMIT]
    if priority:
        payload["priority"] = priority
    if host:
        payload["host"] = host
    return payload


def finalize_event(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Hold a custom builder's event to the limits (text, aggregation key, title, tags)."""
    result = dict(payload)
    result["title"] = str(result.get("title", ""))[:TITLE_LIMIT]
    result["text"] = str(result.get("text", ""))[:EVENT_TEXT_LIMIT]
    if result.get("aggregation_key"):
        result["aggregation_key"] = str(result["aggregation_key"])[:AGGREGATION_KEY_LIMIT]
    result["tags"] = normalize_tags(result.get("tags") or [])
    return result


def shrink_event(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The one truncation tried after a 413: shorter title and text, fewer tags."""
    result = dict(payload)
    result["title"] = str(result.get("title", ""))[:SHRUNK_TITLE_LIMIT]
    result["text"] = str(result.get("text", ""))[:SHRUNK_TEXT_LIMIT]
    result["tags"] = list(result.get("tags") or [])[:20]
    return result


# --- metrics and logs -----------------------------------------------------------------------


def metric_series(
    name: str,
    value: float,
    *,
    timestamp: datetime,
    metric_type: str = "gauge",
    tags: Iterable[str] = (),
    unit: str | None = None,
    interval: int | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """One ``MetricSeries`` with one point. No outbox mark: a tag would be a new time series."""
    _check_name("A metric name", name)
    if metric_type not in METRIC_TYPES:
        raise ValueError(f"metric_type must be one of {', '.join(METRIC_TYPES)}.")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("A metric value must be a finite number.")
    series: dict[str, Any] = {
        "metric": name,
        "type": METRIC_TYPES[metric_type],
        "points": [{"timestamp": int(timestamp.timestamp()), "value": number}],
        "tags": normalize_tags(tags),
    }
    if unit:
        series["unit"] = unit
    if interval is not None:
        series["interval"] = int(interval)
    if host:
        series["resources"] = [{"name": host, "type": "host"}]
    return series


def log_entry(
    message: str,
    *,
    timestamp: datetime,
    source: str,
    service: str,
    status: str = "info",
    tags: Iterable[str] = (),
    attributes: Mapping[str, Any] | None = None,
    hostname: str | None = None,
) -> dict[str, Any]:
    """One ``HTTPLogItem`` within Datadog's 1 MB per entry (the message is cut, marked
    ``...TRUNCATED...``); extra attributes sit beside the reserved ones, never over them."""
    entry: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if key in LOG_RESERVED:
            raise ValueError(f"{key!r} is a reserved log attribute; pass it as an argument.")
        entry[str(key)] = value
    entry.update(
        message=str(message),
        ddsource=source.lower(),
        service=service.lower(),
        status=status,
        timestamp=int(timestamp.timestamp() * 1000),
    )
    ddtags = ",".join(normalize_tags(tags))
    if ddtags:
        entry["ddtags"] = ddtags
    if hostname:
        entry["hostname"] = hostname
    _fit_message(entry, LOG_ENTRY_MAX_BYTES - LOG_MARK_RESERVE)
    return entry


def _fit_message(entry: dict[str, Any], budget: int) -> None:
    """Cut the message so the encoded entry fits ``budget`` bytes. Dropping n bytes of
    UTF-8 drops at least n encoded bytes (JSON escapes only add), so one cut is enough."""
    excess = len(encode(entry)) - budget
    if excess <= 0:
        return
    raw = entry["message"].encode()
    keep = len(raw) - excess - len(TRUNCATED)
    if keep < 0:
        raise ValueError(
            f"This log entry's attributes alone exceed Datadog's {LOG_ENTRY_MAX_BYTES} bytes "
            "per entry."
        )
    entry["message"] = raw[:keep].decode(errors="ignore") + TRUNCATED


def service_check(
    check: str,
    status: int | str,
    *,
    timestamp: datetime,
    host_name: str = "",
    message: str | None = None,
    tags: Iterable[str] = (),
) -> dict[str, Any]:
    """One ``ServiceCheck``; ``status`` is 0-3 or ok/warning/critical/unknown. No outbox
    mark: a repeated status at the same time only reports the same thing again."""
    _check_name("A check name", check)
    if isinstance(status, str):
        if status.lower() not in CHECK_STATUSES:
            raise ValueError(f"status must be 0-3 or one of {', '.join(CHECK_STATUSES)}.")
        status = CHECK_STATUSES[status.lower()]
    if isinstance(status, bool) or status not in CHECK_STATUSES.values():
        raise ValueError(f"status must be 0-3 or one of {', '.join(CHECK_STATUSES)}.")
    payload: dict[str, Any] = {
        "check": check,
        "status": status,
        "host_name": str(host_name),
        "tags": normalize_tags(tags),
        "timestamp": int(timestamp.timestamp()),
    }
    if message:
        payload["message"] = str(message)[:CHECK_MESSAGE_LIMIT]
    return payload


def _check_name(what: str, name: str) -> None:
    if not METRIC_NAME.match(name) or len(name) > METRIC_NAME_LIMIT:
        raise ValueError(
            f"{what} starts with a letter and holds ASCII letters, digits, '_' and '.' "
            f"(at most {METRIC_NAME_LIMIT} characters)."
        )


# --- tags -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def normalize_tag(tag: str) -> str:
    """Datadog's tag rules: lowercase; letters, digits, ``_-:./``; at most 200 characters."""
    return TAG_DISALLOWED.sub("_", str(tag).strip().lower())[:TAG_LIMIT]


def normalize_tags(tags: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for tag in tags:
        normalized = normalize_tag(tag)
        if normalized:
            seen.setdefault(normalized, None)
    return list(seen)


# --- encoding ---------------------------------------------------------------------------------


def encode(payload: Any) -> bytes:
    """Canonical JSON: the same stored payload always gives the same bytes."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def as_sent(kind: str, payload: Mapping[str, Any], outbox_id: int) -> Mapping[str, Any]:
    """The payload as sent: an event's text ends with a line ``outbox_id:<id>``, a log entry
    has the attribute ``outbox_id``; metric points and service checks are unmarked. Never a
    tag: Datadog's tagging guidance forbids unbounded values such as ids."""
    if kind == "event":
        return {**payload, "text": mark_text(str(payload.get("text", "")), outbox_id)}
    if kind == "log":
        return {**payload, DEDUPE_KEY: outbox_id}
    return payload


MARKDOWN_START, MARKDOWN_END = "%%% \n", "\n %%%"


def mark_text(text: str, outbox_id: int) -> str:
    """``text`` with a last line naming the outbox row, within 4,000 characters (inside a
    markdown block, so Datadog still renders it as markdown)."""
    mark = f"\n\n{DEDUPE_KEY}:{outbox_id}"
    end = ""
    if text.startswith(MARKDOWN_START) and text.endswith(MARKDOWN_END):
        text, end = text[: -len(MARKDOWN_END)], MARKDOWN_END
    return text[: EVENT_TEXT_LIMIT - len(mark) - len(end)] + mark + end


def _plain(text: str) -> str:
    """Keep user content out of Datadog's markdown mode (``%%%`` blocks)."""
    return str(text).replace("%%%", "%\u200b%%")


def _without_noun(text: str, noun: str) -> str:
    """``text`` without a leading model name ("Order A-1" -> "A-1"): the title has it."""
    head, rest = text[: len(noun)], text[len(noun) :]
    named = head.lower() == noun.lower() and rest[:1].isspace() and rest.strip()
    return rest.strip() if named else text


def _display(value: Any) -> str:
    if type(value) is str:
        text = value
    else:
        text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text if len(text) <= FIELD_VALUE_LIMIT else text[: FIELD_VALUE_LIMIT - 1] + "…"
