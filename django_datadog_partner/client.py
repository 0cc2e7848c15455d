"""The one HTTP seam to Datadog.

A single ``requests.Session`` per process (kept-alive connections, no environment proxy
look-ups, no urllib3 retries: the outbox owns retries), explicit timeouts, redirects never
followed, response bodies capped, and a transport guard that refuses any host that is not
in the site table. No ORM imports here.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from . import __version__, safejson
from .conf import app_settings
from .exceptions import (
    CertificateRefusedError,
    RetryableError,
    TransportRefusedError,
    UnreadableAnswerError,
)
from .regions import Site, allowed_origins, get_site

USER_AGENT = f"django-datadog-partner/{__version__}"
POOL_SIZE = 32
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
    adapter = HTTPAdapter(pool_connections=16, pool_maxsize=POOL_SIZE, max_retries=0)
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


class DatadogClient:
    """Requests to one Datadog site; every URL is built from the site table."""

    def __init__(self, site: Site | str) -> None:
        self.site = get_site(site) if isinstance(site, str) else site

    def api_url(self, path: str) -> str:
        return self.site.api_url + path

    def logs_url(self, path: str) -> str:
        return self.site.logs_url + path

    def validate_api_key(self, key: str) -> bool | None:
        """True/False when Datadog says the key is valid or not; None when it cannot tell now."""
        try:
            response = self.request("GET", self.api_url(VALIDATE_PATH), headers={"DD-API-KEY": key})
        except (RetryableError, TransportRefusedError):
            return None
        if response.status_code in (401, 403):
            return False
        if response.status_code != 200:
            return None
        try:
            body = json_body(response)
        except UnreadableAnswerError:
            return None
        return isinstance(body, dict) and body.get("valid") is True

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

        Non-2xx answers are returned, not raised: callers classify them.
        """
        _guard_host(url)
        try:
            response = get_session().request(
                method,
                url,
                headers=dict(headers or {}),
                data=data,
                json=json,
                params=params,
                timeout=timeout or app_settings.HTTP_TIMEOUT,
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout as exc:
            raise RetryableError(f"Datadog did not answer in time ({_where(url)}).") from exc
        except requests.exceptions.SSLError as exc:
            if not _certificate_refused(exc):
                raise RetryableError(f"TLS with Datadog failed ({_where(url)}).") from exc
            raise CertificateRefusedError(
                f"The TLS certificate of {urlsplit(url).netloc} could not be verified, so "
                "nothing was sent (something between us and Datadog intercepts TLS, or the "
                "CA bundle is wrong). Never retried without verification."
            ) from exc
        except requests.ConnectionError as exc:
            raise RetryableError(f"Could not reach Datadog ({_where(url)}).") from exc
        except requests.RequestException as exc:
            raise RetryableError(f"Request to Datadog failed ({_where(url)}).") from exc
        _read_capped(response)
        if response.is_redirect or 300 <= response.status_code < 400:
            raise TransportRefusedError(
                f"Datadog answered {response.status_code} with a redirect at {_where(url)}; "
                "redirects are never followed so no credential is re-sent elsewhere.",
                status_code=response.status_code,
            )
        return response


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


def _guard_host(url: str) -> None:
    parts = urlsplit(url)
    if f"{parts.scheme}://{parts.netloc}" not in allowed_origins():
        raise TransportRefusedError(
            f"Refusing to send a request to {parts.netloc!r}: not a configured Datadog site."
        )


def _read_capped(response: requests.Response) -> None:
    limit = app_settings.MAX_RESPONSE_BYTES
    chunks = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > limit:
                response.close()
                raise RetryableError(
                    f"Datadog's answer exceeded {limit} bytes ({_where(response.url)}).",
                    status_code=response.status_code,
                )
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise RetryableError(f"Datadog's answer was cut off ({_where(response.url)}).") from exc
    response._content = b"".join(chunks)
    response._content_consumed = True  # type: ignore[attr-defined]
