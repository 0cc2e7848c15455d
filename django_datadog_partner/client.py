"""The one HTTP seam to Datadog, and the one reading of its answers (``classify``).

One pool of kept-alive connections per process (no environment proxy look-ups, no urllib3
retries: the outbox owns retries), redirects never followed, response bodies capped, and a
transport guard that refuses any host that is not in the site table. No ORM imports here.
The module is longer than most because its one concern is both halves of talking to
Datadog: sending, and reading what came back.

Two transports, one seam. Calls go to the package's own keep-alive HTTP/1.1 client
(``transport``: ``requests.Session.request`` cost three quarters of a worker's CPU per
request). While
something has patched ``requests``' transport (``responses``, as the package's tests and
its test kit ``FakeDatadog`` do; ``requests-mock``), calls go through a ``requests.Session``
instead so the mock answers them. Either way the caller gets a ``requests.Response`` read
by the same code: the guard, the deadline, the cap, the redirect refusal and ``classify()``.
``Call`` is the same request made on a ``multiplex.Multiplexer`` (many in flight on one
thread, as delivery sends), read by the same code as its bytes arrive.

Timeouts: socket timeouts only bound each read, so an answer trickling in a byte at a time
could hold a call indefinitely. Every call therefore also has one deadline, connect + read
timeout after it starts: every socket write and read of the call waits at most until then
(``transport`` on the direct path, ``deadline.py`` on the requests path, which a mock's
pass-through can take to a real socket), and the body is streamed and dropped once it
passes.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from django.views.decorators.debug import sensitive_variables

from . import __version__, multiplex, safejson, transport
from .conf import app_settings
from .deadline import DeadlineAdapter, deadline_of_call
from .descriptors import POOL_SIZE
from .exceptions import (
    AnswerLostError,
    CertificateRefusedError,
    DatadogPartnerError,
    RateLimitedError,
    RetryableError,
    TransportRefusedError,
    UnreadableAnswerError,
)
from .regions import Site, allowed_origins, get_site

USER_AGENT = f"django-datadog-partner/{__version__}"
VALIDATE_PATH = "/api/v1/validate"
MIN_PAUSE, MAX_PAUSE = 1.0, 3600.0

_lock = threading.Lock()
_shared: dict[str, requests.Session] = {}


def get_session() -> requests.Session:
    """The process-wide session (thread-safe for concurrent requests on distinct hosts)."""
    session = _shared.get("session")
    if session is None:
        with _lock:
            session = _shared.get("session")
            if session is None:
                session = _new_session()
                _shared["session"] = session
    return session


def _new_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = DeadlineAdapter(pool_connections=16, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def reset_session() -> None:
    """Drop pooled connections (tests, and after a fork)."""
    with _lock:
        session = _shared.pop("session", None)
    if session is not None:
        session.close()
    transport.reset()


class DatadogClient:
    """Requests to one Datadog site; every URL is built from the site table."""

    def __init__(self, site: Site | str) -> None:
        self.site = get_site(site) if isinstance(site, str) else site

    def api_url(self, path: str) -> str:
        return self.site.api_url + path

    def logs_url(self, path: str) -> str:
        return self.site.logs_url + path

    @sensitive_variables()
    def validate_api_key(self, key: str) -> bool | None:
        """True/False when Datadog says the key is valid or not; None when it cannot tell now."""
        try:
            response = self.request("GET", self.api_url(VALIDATE_PATH), headers={"DD-API-KEY": key})
        except (RetryableError, TransportRefusedError):
            return None
        verdict = classify(response).verdict
        if verdict in (Verdict.UNAUTHORIZED, Verdict.FORBIDDEN):
            return False
        if verdict is not Verdict.SUCCESS:
            return None
        try:
            body = json_body(response)
        except UnreadableAnswerError:
            return None
        return isinstance(body, dict) and body.get("valid") is True

    @sensitive_variables()  # and, by Django's rule, every frame below: requests, urllib3
    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """Send one request; 3xx answers and unknown hosts are refused, bodies are capped.

        Non-2xx answers are returned, not raised: callers classify them. The whole call
        (connect, send, headers and body) ends by connect + read timeout after it starts.
        Every failure is the package's own error raised ``from None``: the frames and
        messages of requests and urllib3 (which hold headers and bodies) stay out of
        tracebacks and reports.
        """
        _guard_host(url)
        timeout = timeout or app_settings.HTTP_TIMEOUT
        deadline = time.monotonic() + sum(timeout)
        in_call = deadline_of_call.set(deadline)
        try:
            if transport.requests_patched():
                response = _send_by_requests(method, url, headers, data, json, params, timeout,
                                             deadline)  # fmt: skip
            else:
                response = transport.send(
                    method, url, _headers(headers, json), _body(data, json, params), timeout
                )
                _read_capped(response, deadline)
        except transport.Failure as failure:
            raise _our_error(failure.error, url, deadline) from None
        finally:
            deadline_of_call.reset(in_call)
        _refuse_redirect(response, url)
        return response


class Call:
    """One request of the seam made on a ``multiplex.Multiplexer`` (many in flight on one
    thread) instead of on the calling thread: ``request()``'s guard, deadline, cap,
    redirect refusal and errors, read from the bytes as they arrive."""

    @sensitive_variables()
    def __init__(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> None:
        _guard_host(url)
        timeout = timeout or app_settings.HTTP_TIMEOUT
        deadline = time.monotonic() + sum(timeout)
        self.method = method
        try:
            self.url, origin, sent = transport.prepare(
                method, url, _headers(headers, None), _body(data, None, None)
            )
        except Exception as exc:  # read below; its frames hold the request
            raise _our_error(exc, url, deadline) from None
        self.exchange = multiplex.Exchange(origin, sent, timeout, deadline, tag=self)

    def answer(self) -> tuple[requests.Response, bool] | None:
        """(the response, whether its connection may be kept) once it arrived whole; None
        while it has not. Raises the package's error, as ``request()`` would."""
        replay = self.exchange.replay()
        deadline = self.exchange.deadline
        try:
            response = transport.response_of(self.method, self.url, replay)
            _read_capped(response, deadline)
        except multiplex.Incomplete:
            return None
        except DatadogPartnerError:
            raise
        except Exception as exc:  # read below; its frames hold the answer
            raise _our_error(exc, self.url, deadline) from None
        _refuse_redirect(response, self.url)
        return response, replay.keep

    def failed(self, error: BaseException) -> DatadogPartnerError:
        """The package's error for the multiplexer's ``error`` (a connect, a send or a
        wait that failed)."""
        return _our_error(error, self.url, self.exchange.deadline)


def _refuse_redirect(response: requests.Response, url: str) -> None:
    if response.is_redirect or 300 <= response.status_code < 400:
        raise TransportRefusedError(
            f"Datadog answered {response.status_code} with a redirect at {_where(url)}; "
            "redirects are never followed so no credential is re-sent elsewhere.",
            status_code=response.status_code,
        )


def _headers(headers: Mapping[str, str] | None, json: Any) -> dict[str, str]:
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    if json is not None:
        sent.setdefault("Content-Type", "application/json")
    return sent


def _body(data: Any, json: Any, params: Mapping[str, str] | None) -> transport.Body:
    """What ``transport.send`` takes: bytes, or form fields (the OAuth calls)."""
    if json is not None:
        data = transport.dumps(json)
    elif isinstance(data, str):
        data = data.encode()
    return transport.Body(data, dict(params) if params else None)


def _send_by_requests(
    method: str,
    url: str,
    headers: Mapping[str, str] | None,
    data: Any,
    json: Any,
    params: Mapping[str, str] | None,
    timeout: tuple[float, float],
    deadline: float,
) -> requests.Response:
    """The same call through ``requests.Session`` (only while a mock patches it)."""
    try:
        response = get_session().request(
            method, url, headers=dict(headers or {}), data=data, json=json, params=params,
            timeout=timeout, allow_redirects=False, stream=True,
        )  # fmt: skip
    except Exception as exc:  # classified below, without its frames
        raise transport.Failure(exc) from None
    _read_capped(response, deadline)
    return response


def _our_error(exc: BaseException, url: str, deadline: float) -> DatadogPartnerError:
    """The package's error for a failed call, whichever transport raised ``exc``."""
    if isinstance(exc, DatadogPartnerError):
        return exc
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # nothing was sent
        return RetryableError(f"Could not reach Datadog ({_where(url)}).")
    if _connect_timeout(exc):  # nothing was sent
        return RetryableError(_late(url))
    if isinstance(exc, requests.Timeout | urllib3.exceptions.TimeoutError | TimeoutError):
        return AnswerLostError(_late(url))
    if isinstance(exc, requests.exceptions.SSLError | urllib3.exceptions.SSLError | ssl.SSLError):
        if not _certificate_refused(exc):
            return RetryableError(f"TLS with Datadog failed ({_where(url)}).")
        return CertificateRefusedError(
            f"The TLS certificate of {urlsplit(url).netloc} could not be verified, so "
            "nothing was sent (something between us and Datadog intercepts TLS, or the "
            "CA bundle is wrong). Never retried without verification."
        )
    if isinstance(exc, requests.ConnectionError | urllib3.exceptions.HTTPError | OSError):
        if time.monotonic() >= deadline:  # a write cut short by the deadline
            return AnswerLostError(_late(url))
        if _after_sending(exc):
            return AnswerLostError(
                f"Datadog closed the connection without answering ({_where(url)})."
            )
        return RetryableError(f"Could not reach Datadog ({_where(url)}).")
    if isinstance(exc, requests.RequestException):
        return RetryableError(f"Request to Datadog failed ({_failure(url, exc)}).")
    return DatadogPartnerError(
        f"Sending a request to Datadog failed unexpectedly ({_failure(url, exc)})."
    )


def _connect_timeout(exc: BaseException) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    return isinstance(exc, urllib3.exceptions.ConnectTimeoutError) and not isinstance(
        exc, urllib3.exceptions.NewConnectionError
    )


class Verdict(StrEnum):
    """What an answer from Datadog means, whichever endpoint gave it; each caller decides
    what that means for its own work (a row, a token, a key)."""

    SUCCESS = "success"
    RATE_LIMITED = "rate_limited"  # 429: the same request, after the pause Datadog asked for
    UNAVAILABLE = "unavailable"  # 408, 425, 5xx: the same request, later
    UNAUTHORIZED = "unauthorized"  # 401: the credential sent is not accepted
    FORBIDDEN = "forbidden"  # 403: the credential is known but may not do this
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"  # 413
    INVALID = "invalid"  # 400, 422: this body will never be accepted
    REFUSED = "refused"  # any other answer


#: Statuses besides every 5xx for which the same request may succeed later.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
#: How long to pause after a 429 that says nothing about when to come back.
DEFAULT_RETRY_AFTER = 60.0

_BY_STATUS = {
    401: Verdict.UNAUTHORIZED, 403: Verdict.FORBIDDEN, 404: Verdict.NOT_FOUND,
    409: Verdict.CONFLICT, 413: Verdict.TOO_LARGE, 400: Verdict.INVALID, 422: Verdict.INVALID,
    429: Verdict.RATE_LIMITED,
}  # fmt: skip


@dataclass(frozen=True)
class Answer:
    """``classify()``'s reading of one response."""

    status: int
    verdict: Verdict
    #: After a 429: the pause from ``X-RateLimit-Reset``/``Retry-After``, None if unsaid.
    pause_for: float | None = None

    @property
    def code(self) -> str:
        return f"http_{self.status}"

    @property
    def retryable(self) -> bool:
        return self.verdict in (Verdict.RATE_LIMITED, Verdict.UNAVAILABLE)

    @property
    def retry_after(self) -> float:
        return DEFAULT_RETRY_AFTER if self.pause_for is None else self.pause_for


def classify(response: requests.Response) -> Answer:
    """The one place that reads a Datadog status code (redirects never get here)."""
    status = response.status_code
    if 200 <= status < 300:
        return Answer(status, Verdict.SUCCESS)
    if status == 429:
        return Answer(status, Verdict.RATE_LIMITED, rate_limit_wait(response.headers))
    if status >= 500 or status in RETRYABLE_STATUSES:
        return Answer(status, Verdict.UNAVAILABLE)
    return Answer(status, _BY_STATUS.get(status, Verdict.REFUSED))


def retry_error(
    answer: Answer, response: requests.Response, where: str
) -> RateLimitedError | RetryableError | None:
    """The error for an answer worth the same request later (None for any other), naming
    ``where`` (an endpoint; never a URL's query)."""
    if answer.verdict is Verdict.RATE_LIMITED:
        return RateLimitedError(
            f"Datadog asked us to slow down ({where}).",
            retry_after=answer.retry_after,
            response=response,
        )
    if answer.retryable:
        return RetryableError(f"Datadog failed to answer {where}.", response=response)
    return None


@sensitive_variables()
def json_body(response: requests.Response) -> Any:
    """Datadog's answer decoded: the one place answers are parsed, with a nesting limit.

    Raises ``UnreadableAnswerError`` (never ``RecursionError``, never the body's text).
    """
    try:
        return safejson.loads(response.content)
    except ValueError:
        raise UnreadableAnswerError(
            f"Datadog's answer is not readable JSON ({_where(response.url)}).",
            status_code=response.status_code,
        ) from None


def rate_limit_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds to pause from ``X-RateLimit-Reset`` or ``Retry-After`` (seconds or HTTP-date),
    clamped to [1 s, 1 h]; ``None`` when neither is usable."""
    waits = []
    for name in ("X-RateLimit-Reset", "Retry-After"):
        raw = (headers.get(name) or "").strip()
        if not raw:
            continue
        try:
            waits.append(float(raw))
            continue
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            continue
        if when.tzinfo is not None:
            waits.append((when - datetime.now(UTC)).total_seconds())
    usable = [w for w in waits if w == w]  # drop NaN
    if not usable:
        return None
    return min(max(max(usable), MIN_PAUSE), MAX_PAUSE)


def _certificate_refused(exc: BaseException) -> bool:
    """Whether the certificate failed verification (not a transient TLS failure such as a
    reset handshake): urllib3 wraps ``ssl.SSLCertVerificationError`` a few levels down."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen or not isinstance(current, BaseException):
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        pending += [*current.args, getattr(current, "reason", None), current.__cause__,
                    current.__context__]  # fmt: skip
    return False


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def _failure(url: str, exc: BaseException) -> str:
    """Where, and the exception's type only: its message may quote a header or a body."""
    return f"{_where(url)}: {type(exc).__name__}"


def _guard_host(url: str) -> None:
    parts = urlsplit(url)
    if f"{parts.scheme}://{parts.netloc}" not in allowed_origins():
        raise TransportRefusedError(
            f"Refusing to send a request to {parts.netloc!r}: not a configured Datadog site."
        )


def _late(url: str) -> str:
    return f"Datadog did not answer in time ({_where(url)})."


def _after_sending(exc: BaseException) -> bool:
    """Whether the connection broke once the request was on its way (not while connecting)."""
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return True
    return bool(exc.args) and isinstance(exc.args[0], urllib3.exceptions.ProtocolError)


def _read_capped(response: requests.Response, deadline: float) -> None:
    """Stream the body into ``response.content``; stop at the size cap or the deadline.

    A 2xx answer that does not arrive whole is an ``AnswerLostError``: Datadog acted on it.
    """
    limit = app_settings.MAX_RESPONSE_BYTES
    error = AnswerLostError if 200 <= response.status_code < 300 else RetryableError
    chunks = []
    size = 0
    try:
        for chunk in response.raw.stream(65536, decode_content=True):
            size += len(chunk)
            if size > limit:
                response.close()
                raise error(
                    f"Datadog's answer exceeded {limit} bytes ({_where(response.url)}).",
                    status_code=response.status_code,
                )
            chunks.append(chunk)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        response.close()
        if time.monotonic() >= deadline:
            raise error(_late(response.url)) from None
        raise error(f"Datadog's answer was cut off ({_where(response.url)}).") from None
    response._content = b"".join(chunks)
    response._content_consumed = True  # type: ignore[attr-defined]
    response.raw.release_conn()
