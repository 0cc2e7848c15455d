"""The intake endpoints: ``/api/v1/validate``, ``/api/v1/events``, ``/api/v2/series``,
``/api/v2/logs``, ``/api/v1/check_run``. Authenticated by ``DD-API-KEY`` only, as at
Datadog."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

from . import validation
from .protocol import Answer, Context, Request, answer, api_errors, logs_errors, rate_limit_headers
from .state import Faults, KeyInfo, Received, digest

SERIES_MAX_BYTES = 512_000
DECOMPRESSED_MAX_BYTES = 5_242_880
LOGS_MAX_ENTRIES = 1000
LOG_MAX_BYTES = 1_000_000

ErrorShape = Callable[..., Answer]


class Refused(Exception):
    def __init__(self, result: Answer) -> None:
        self.answer = result


def authenticate(request: Request, ctx: Context, shape: ErrorShape, *, intake: bool) -> KeyInfo:
    """The key's org, after the org's injected delay and faults; raises ``Refused``."""
    key = request.header("dd-api-key")
    if not key:
        if shape is logs_errors:
            raise Refused(logs_errors(401, "API key is missing"))
        raise Refused(api_errors(403, "Forbidden"))
    info = ctx.store.find_key(digest(key))
    if info is None or info.revoked or (info.org.domain and info.org.domain != ctx.domain):
        raise Refused(shape(403, "Forbidden"))
    faults = ctx.store.faults(info.org.id)
    if faults.slow_seconds:
        ctx.sleep(faults.slow_seconds)
    if intake and faults.intake:
        ctx.store.spend_fault(info.org.id)
        raise Refused(fault_answer(faults, shape))
    return info


def fault_answer(faults: Faults, shape: ErrorShape) -> Answer:
    status = int(faults.intake)
    detail = {
        429: "Too many requests",
        500: "Internal Server Error",
        503: "Service Unavailable",
        403: "Forbidden",
    }[status]
    headers = rate_limit_headers(faults.rate_limit_reset, "sandbox_intake") if status == 429 else {}
    if shape is logs_errors:
        return logs_errors(status, detail, headers)
    return api_errors(status, detail, headers=headers)


def decode_body(request: Request, shape: ErrorShape) -> bytes:
    """The request body after ``Content-Encoding``; too large or corrupt bodies are refused."""
    encoding = request.header("content-encoding").strip().lower()
    data: bytes | None
    if encoding in ("", "identity"):
        data = request.body
    elif encoding in ("gzip", "deflate"):
        # wbits=47 accepts gzip and zlib streams; deflate may also be raw (wbits=-15).
        data = _inflate(request.body, 47) if encoding == "gzip" else _inflate_deflate(request.body)
    else:
        raise Refused(shape(400, f"Unsupported Content-Encoding: {encoding[:40]}"))
    if data is None:
        raise Refused(shape(400, f"Malformed {encoding} body"))
    if len(data) > DECOMPRESSED_MAX_BYTES:
        raise Refused(shape(413, "Payload too large"))
    return data


def _inflate(data: bytes, wbits: int) -> bytes | None:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, DECOMPRESSED_MAX_BYTES + 1)
    except zlib.error:
        return None
    if not inflater.eof and len(out) <= DECOMPRESSED_MAX_BYTES:
        return None
    return out


def _inflate_deflate(data: bytes) -> bytes | None:
    out = _inflate(data, 47)
    return out if out is not None else _inflate(data, -15)


def parse_json(data: bytes, shape: ErrorShape) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):  # ``[[[…``: refused, no 500
        raise Refused(shape(400, "Invalid JSON payload")) from None


def validate_key(request: Request, ctx: Context) -> Answer:
    authenticate(request, ctx, api_errors, intake=False)
    return answer(200, {"valid": True})


def post_event(request: Request, ctx: Context) -> Answer:
    info = authenticate(request, ctx, api_errors, intake=True)
    body = parse_json(decode_body(request, api_errors), api_errors)
    problems = validation.event_problems(body)
    if problems:
        return api_errors(400, *problems)
    extra: dict[str, Any] = {"domain": ctx.domain}
    if len(body["text"]) > validation.EVENT_TEXT_MAX:
        body = {**body, "text": body["text"][: validation.EVENT_TEXT_MAX]}
        extra["truncated"] = True
    event_id = _record(ctx, request, "event", info, body, extra)
    event = {
        "alert_type": body.get("alert_type", "info"),
        "date_happened": body.get("date_happened", int(ctx.now().timestamp())),
        "id": event_id,
        "id_str": str(event_id),
        "priority": body.get("priority") or "normal",
        "tags": body.get("tags", []),
        "text": body["text"],
        "title": body["title"],
        "url": f"/event/event?id={event_id}",
    }
    return answer(202, {"event": event, "status": "ok"})


def post_series(request: Request, ctx: Context) -> Answer:
    info = authenticate(request, ctx, api_errors, intake=True)
    if len(request.body) > SERIES_MAX_BYTES:
        return api_errors(413, "Payload too large")
    body = parse_json(decode_body(request, api_errors), api_errors)
    problems = validation.series_problems(body)
    if problems:
        return api_errors(400, *problems)
    notes = validation.stale_points(body, ctx.now().timestamp())
    if ctx.store.faults(info.org.id).series_errors and not notes:
        notes = [f"Sandbox: {len(body['series'])} series accepted with this error listed"]
    _record(ctx, request, "series", info, body, {"domain": ctx.domain, "notes": notes})
    return answer(202, {"errors": notes})


def post_check_run(request: Request, ctx: Context) -> Answer:
    info = authenticate(request, ctx, api_errors, intake=True)
    body = parse_json(decode_body(request, api_errors), api_errors)
    problems = validation.check_problems(body)
    if not problems and ctx.store.faults(info.org.id).check_host_required:
        problems = [
            f"check[{i}].host_name is empty" for i, c in enumerate(body) if not c["host_name"]
        ]
    if problems:
        return api_errors(400, *problems[:5])
    _record(ctx, request, "checks", info, body, {"domain": ctx.domain})
    return answer(202, {"status": "ok"})


def post_logs(request: Request, ctx: Context) -> Answer:
    info = authenticate(request, ctx, logs_errors, intake=True)
    data = decode_body(request, logs_errors)
    if request.content_type in ("text/plain", "application/logplex-1"):
        entries: list[Any] = [_plain_entry(line, request) for line in _lines(data)]
    else:
        body = parse_json(data, logs_errors)
        entries = body if isinstance(body, list) else [body]
    if len(entries) > LOGS_MAX_ENTRIES:
        return logs_errors(413, f"More than {LOGS_MAX_ENTRIES} entries in one request")
    problems = validation.log_problems(entries)
    if problems:
        return logs_errors(400, "; ".join(problems[:5]))
    for entry in entries:
        if len(entry["message"].encode()) > LOG_MAX_BYTES:
            entry["message"] = entry["message"].encode()[:LOG_MAX_BYTES].decode(errors="ignore")
    extra = {"domain": ctx.domain, "query_ddtags": request.query.get("ddtags", "")}
    _record(ctx, request, "logs", info, entries, extra)
    return answer(202, {})


def _lines(data: bytes) -> list[str]:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise Refused(logs_errors(400, "Body is not UTF-8")) from None
    return [line for line in text.splitlines() if line.strip()]


def _plain_entry(line: str, request: Request) -> dict[str, str]:
    entry = {"message": line}
    for name, attribute in (("ddsource", "ddsource"), ("service", "service"), ("host", "hostname")):
        if request.query.get(name):
            entry[attribute] = request.query[name]
    return entry


def _record(
    ctx: Context, request: Request, kind: str, info: KeyInfo, payload: Any, extra: dict[str, Any]
) -> int:
    return ctx.store.record(
        Received(
            kind=kind,
            org_id=info.org.id,
            payload=payload,
            content_encoding=request.header("content-encoding"),
            received_at=ctx.now(),
            extra=extra,
        )
    )
