"""What every page of the package shares: the headers (``Cache-Control: no-store``, a
strict ``Referrer-Policy``, ``X-Frame-Options: DENY``), bounded query parameters, the
failure, misconfiguration and not-found pages, and the session keys the pages pass on.

A broken configuration (a secret that cannot be read) gets the misconfiguration page,
whatever the view, a 404 (a connection the user may not manage, or none) the package's
not-found page in the same layout; the package's exception reporter filter covers the
error reports of these requests even with ``DEBUG`` on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.clickjacking import xframe_options_deny

from .. import error_reports, failures
from ..conf import app_settings
from ..connections.api_keys import api_keys_page_url, revoke_cures
from ..connections.authorization import callback_url
from ..models import Connection, ConnectionStatus

logger = logging.getLogger("django_datadog_partner")

RESULT_KEY = "datadog_partner_result"
FAILURE_KEY = "datadog_partner_failure"
NOTICE_KEY = "datadog_partner_notice"
MAX_QUERY_STRING = 8192
MAX_LENGTHS = {
    "domain": 255, "site": 255, "code": 2048, "state": 128, "error": 100,
    "error_description": 1000, "dd_oid": 100, "dd_org_name": 255, "reason": 64,
}  # fmt: skip


class BadParameter(Exception):
    """A repeated, oversized or malformed query parameter."""


def _with_page_headers(referrer_policy: str) -> Callable[[Callable[..., HttpResponse]], Any]:
    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            request.exception_reporter_filter = error_reports.REPORTER_FILTER
            try:
                response = view(request, *args, **kwargs)
            except ImproperlyConfigured as exc:
                response = misconfigured(request, exc)
            except Http404:
                response = not_found(request)
            add_never_cache_headers(response)
            response["Referrer-Policy"] = referrer_policy
            return response

        return xframe_options_deny(wrapper)

    return decorator


#: The callback and the pages it leads to: no Referer at all, since the callback URL
#: carries ``code`` and ``state``.
flow_page = _with_page_headers("no-referrer")

#: Pages with forms. Under ``no-referrer`` Chromium sends ``Origin: null`` with
#: same-origin form POSTs, which Django's CSRF check refuses; ``same-origin`` still sends
#: no Referer to Datadog or any other site.
form_page = _with_page_headers("same-origin")


def single(params: QueryDict, name: str) -> str | None:
    """One value of ``name`` or None; repeats, oversize and NUL bytes are refused."""
    values = params.getlist(name)
    if len(values) > 1:
        raise BadParameter(name)
    if not values:
        return None
    value = values[0]
    if len(value) > MAX_LENGTHS[name] or "\x00" in value:
        raise BadParameter(name)
    return value


def query(request: HttpRequest, *names: str) -> dict[str, str | None]:
    if len(request.META.get("QUERY_STRING", "")) > MAX_QUERY_STRING:
        raise BadParameter("query string")
    return {name: single(request.GET, name) for name in names}


def failure_page(
    request: HttpRequest, reason: str, *, detail: str = "", note: str = ""
) -> HttpResponse:
    """The page of ``reason``; ``detail`` is quoted as Datadog's words, ``note`` is ours."""
    page = failures.page_for(reason)
    context = {
        "reason": reason if reason in failures.PAGES else failures.STATE_UNKNOWN,
        "page": page,
        "detail": detail,
        "note": note,
        "redirect_uri": callback_url() if reason == failures.REDIRECT_URI_MISMATCH else "",
        "success_url": _success_url(),
    }
    return render(request, "datadog_partner/error.html", context, status=page.status)


def misconfigured(request: HttpRequest, exc: ImproperlyConfigured) -> HttpResponse:
    """The misconfiguration page (503), and a log line naming the setting, never a value."""
    log_misconfiguration(request, exc)
    return failure_page(request, failures.MISCONFIGURED)


def log_misconfiguration(request: HttpRequest, exc: ImproperlyConfigured) -> None:
    logger.error("Datadog integration misconfigured (%s %s): %s", request.method, request.path, exc)


def _success_url() -> str:
    try:
        return app_settings.SUCCESS_URL
    except ImproperlyConfigured:  # DATADOG_PARTNER itself is unusable: the page still renders
        return "/"


def not_found(request: HttpRequest) -> HttpResponse:
    """The 404 of the package's pages, in their layout: the same page for a connection that
    does not exist and for one the user may not manage (no existence oracle)."""
    context = {"success_url": _success_url()}
    return render(request, "datadog_partner/not_found.html", context, status=404)


def key_context(connection: Connection) -> dict[str, Any]:
    return {
        "key_missing": connection.status == ConnectionStatus.KEY_MISSING,
        "api_keys_page": api_keys_page_url(connection),
        "revoke_steps": revoke_cures(connection),
    }
