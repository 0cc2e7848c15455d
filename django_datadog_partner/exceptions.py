"""Errors raised by the package.

Every error can carry the HTTP status and a *redacted* description of Datadog's answer
(error codes and messages only, never a body that could hold a token or key).
Configuration errors are also ``ImproperlyConfigured``; errors caused by bad or replayed
input are also ``SuspiciousOperation`` so Django answers 400 if one ever escapes a view.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation

from . import safejson

if TYPE_CHECKING:
    import requests


class DatadogPartnerError(Exception):
    """Base class: ``status_code``, ``error_code`` and ``response_summary`` when known."""

    def __init__(
        self,
        message: str = "",
        *,
        status_code: int | None = None,
        error_code: str = "",
        response: requests.Response | None = None,
    ) -> None:
        self.status_code = status_code if status_code is not None else _status(response)
        self.error_code = error_code
        self.response_summary = describe_response(response) if response is not None else ""
        super().__init__(message)

    def __str__(self) -> str:
        text = super().__str__()
        if self.response_summary:
            return f"{text} ({self.response_summary})" if text else self.response_summary
        return text


class ConfigurationError(DatadogPartnerError, ImproperlyConfigured):
    """Our own setup is wrong (client credentials, settings, a bug): no customer can fix it."""


class InvalidSiteError(DatadogPartnerError, SuspiciousOperation):
    """A ``domain`` or ``site`` value was refused; ``reason`` is safe to show to users."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class OAuthError(DatadogPartnerError):
    """The OAuth server refused a request; ``error_code`` is the RFC 6749 code."""

    def __init__(self, message: str = "", *, description: str = "", **kwargs: Any) -> None:
        self.description = description
        super().__init__(message, **kwargs)


class InvalidClientError(OAuthError, ConfigurationError):
    """Datadog refused our client credentials (``invalid_client`` or a 401 from the token
    endpoint): our configuration is wrong, never the customer's grant."""


class InvalidStateError(OAuthError, SuspiciousOperation):
    """The callback's ``state`` is missing, unknown, expired, replayed or not this browser's."""


class NeedsReconnectError(DatadogPartnerError):
    """The customer revoked the grant or uninstalled the integration: only a new flow helps."""


class RefreshTokenLostError(NeedsReconnectError):
    """Datadog refuses a refresh token after the answer to an earlier refresh was lost: it
    had probably replaced the token already. The connection keeps delivering with its API
    key; only calls that need the OAuth token wait for a new flow."""


class CredentialsUnreadableError(DatadogPartnerError):
    """A stored secret cannot be decrypted with the configured ``ENCRYPTION_KEYS``."""


class RateLimitedError(DatadogPartnerError):
    """HTTP 429; ``retry_after`` is the wait in seconds Datadog asked for."""

    def __init__(self, message: str = "", *, retry_after: float, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class UnreadableAnswerError(DatadogPartnerError):
    """Datadog's answer is not JSON we can read: malformed, not UTF-8, or nested deeper
    than ``safejson.MAX_DEPTH``. The body itself is never kept."""


class RetryableError(DatadogPartnerError):
    """A timeout, a reset connection or a 5xx: try again later, change nothing."""


class OutOfDescriptorsError(RetryableError):
    """This process could not open a connection: it has no file descriptor left (its
    ``RLIMIT_NOFILE``, or the system's). Nothing was sent, and Datadog is not at fault."""


class AnswerLostError(RetryableError):
    """The request was sent but its answer did not arrive whole (a read timeout, a reset
    after sending, a 2xx body cut off): Datadog may have acted on it."""


class TransportRefusedError(ConfigurationError):
    """We refused to send: a redirect, a host that is not in the Datadog site table, or a
    TLS certificate that failed verification."""


class CertificateRefusedError(TransportRefusedError):
    """Datadog's TLS certificate failed verification (an intercepting proxy, a wrong CA
    bundle): nothing was sent, and it is never retried without verification."""


def _status(response: requests.Response | None) -> int | None:
    return None if response is None else response.status_code


def datadog_error_messages(response: requests.Response) -> list[str]:
    """Error strings from both RFC 6749 bodies and Datadog's ``{"errors": [...]}`` shape."""
    if b"error" not in (response.content or b""):  # both keys say it: most are not parsed
        return []
    try:
        body = safejson.loads(response.content)
    except ValueError:
        return []
    messages: list[str] = []
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            desc = body.get("error_description")
            messages.append(f"{body['error']} - {desc}" if isinstance(desc, str) else body["error"])
        for item in body.get("errors") or []:
            if isinstance(item, str):
                messages.append(item)
            elif isinstance(item, dict):
                parts = [str(item[k]) for k in ("title", "detail") if item.get(k)]
                if parts:
                    messages.append(": ".join(parts))
    return [m[:300] for m in messages[:5]]


def describe_response(response: requests.Response) -> str:
    """A one-line, secret-free summary: status, host and path, Datadog's error strings, and
    the name of the rate limit that answered (what Datadog's support asks for)."""
    request = getattr(response, "request", None)
    where = ""
    if request is not None and request.url:
        where = " from " + request.url.split("?", 1)[0].split("://", 1)[-1]
    messages = "; ".join(datadog_error_messages(response))
    summary = f"HTTP {response.status_code}{where}" + (f": {messages}" if messages else "")
    limit = rate_limit_description(response.headers)
    return f"{summary} ({limit})" if limit else summary


def rate_limit_description(headers: Mapping[str, str]) -> str:
    """``rate limit <X-RateLimit-Name>: <limit> per <period> s``, or "" without a name."""
    name = _header_text(headers, "X-RateLimit-Name")
    if not name:
        return ""
    limit = _header_text(headers, "X-RateLimit-Limit")
    period = _header_text(headers, "X-RateLimit-Period")
    quota = f": {limit} per {period} s" if limit and period else ""
    return f"rate limit {name}{quota}"


def _header_text(headers: Mapping[str, str], name: str) -> str:
    value = str(headers.get(name) or "").strip()[:100]
    return value if value.isprintable() else ""
