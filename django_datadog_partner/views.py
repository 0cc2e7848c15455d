"""Pages of the connect flow and of a user's connections. Thin: operations live in
``connections``; these views check input and permissions and translate outcomes to pages.

Every page here is sent with ``Cache-Control: no-store``, a strict ``Referrer-Policy``
and ``X-Frame-Options: DENY``; failures get a page that says what happened and what to do,
never a stack trace. A broken configuration (a secret that cannot be read) gets the
misconfiguration page, whatever the view, and the package's exception reporter filter
covers the error reports of these requests even with ``DEBUG`` on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext_lazy as _
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import connections, error_reports, failures, permissions
from .conf import app_settings
from .connections.api_keys import KEY_MISSING, api_keys_page_url, revoke_cures
from .connections.authorization import burn_state, callback_url
from .connections.connect import ConnectFailed, fail
from .exceptions import (
    ConfigurationError,
    DatadogPartnerError,
    InvalidSiteError,
    NeedsReconnectError,
)
from .models import Connection, ConnectionStatus
from .regions import Site, WebSite, check_region_agreement, read_onboarding
from .regions import all_sites as datadog_sites

logger = logging.getLogger("django_datadog_partner")

RESULT_KEY = "datadog_partner_result"
FAILURE_KEY = "datadog_partner_failure"
NOTICE_KEY = "datadog_partner_notice"
MAX_QUERY_STRING = 8192
MAX_LENGTHS = {
    "domain": 255, "site": 255, "code": 2048, "state": 128, "error": 100,
    "error_description": 1000, "dd_oid": 100, "dd_org_name": 255, "reason": 64,
}  # fmt: skip

RECONNECT_FIRST = _("This connection must be reconnected before an API key can be created.")
KEY_RETRY_FAILED = _(
    "Datadog could not be reached or refused the request. Try again in a minute, or reconnect."
)
KEY_READY = _("The API key is in place: data can be sent to Datadog.")
KEY_STILL_MISSING = _("Datadog still has not given us an API key.")
DISCONNECTED = _("Disconnected: Datadog revoked this integration's access.")
MEMBERS_RECONNECT = _(
    "Only a member of the connection's owner can reconnect it: the Datadog login used to "
    "reconnect decides which Datadog organisation receives the data. Send them this page."
)


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


def failure_redirect(request: HttpRequest, exc: ConnectFailed) -> HttpResponse:
    """PRG to the error page, so ``code`` and ``state`` leave the address bar."""
    request.session[FAILURE_KEY] = {"reason": exc.reason, "detail": exc.detail, "note": exc.note}
    return HttpResponseRedirect(
        reverse("datadog_partner:error") + "?" + urlencode({"reason": exc.reason})
    )


# --- The flow --------------------------------------------------------------------------


@form_page
@csrf_protect
@require_http_methods(["GET", "POST"])
def onboarding(request: HttpRequest) -> HttpResponse:
    """Datadog's Connect Accounts lands here with ``?domain=&site=``; the user confirms."""
    try:
        params = query(request, "domain", "site")
    except BadParameter as exc:
        fail(failures.BAD_REQUEST, user=request.user, message=f"bad parameter {exc}")
        return failure_page(request, failures.BAD_REQUEST)
    if not any(value and value.strip() for value in params.values()):
        return site_picker(request)
    try:
        given = read_onboarding(params["domain"], params["site"])
    except InvalidSiteError as exc:
        fail(failures.INVALID_SITE, user=request.user, message=exc.reason)
        return failure_page(request, failures.INVALID_SITE, note=exc.reason)
    site, web_site = given.site, given.web_site
    if site is None:  # ``site`` alone, in more than one region: the user says which
        return site_picker(request, web_site=web_site, choices=given.choices)
    try:
        check_region_agreement(web_site, site)
    except InvalidSiteError as exc:
        fail(failures.REGION_MISMATCH, user=request.user, message=exc.reason)
        return failure_page(request, failures.REGION_MISMATCH, note=exc.reason)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    owners = permissions.owners_for_user(request.user)
    if not owners:
        fail(failures.NO_OWNER, user=request.user)
        return failure_page(request, failures.NO_OWNER)
    if request.method == "POST":
        owner = permissions.find_owner(request.user, request.POST.get("owner", ""))
        if owner is None:
            fail(failures.BAD_REQUEST, user=request.user, message="unknown owner chosen")
            return failure_page(request, failures.BAD_REQUEST)
        url = connections.start_authorization(
            request.session, user=request.user, owner=owner, site=site, web_site=web_site
        )
        return HttpResponseRedirect(url)
    choices = [(permissions.owner_choice_value(o), str(o)) for o in owners]
    context = {"site": site, "web_site": web_site, "choices": choices, "owner": owners[0]}
    return render(request, "datadog_partner/confirm.html", context)


def site_picker(
    request: HttpRequest, *, web_site: WebSite | None = None, choices: tuple[Site, ...] = ()
) -> HttpResponse:
    """Choose the Datadog site: every one when reached without ``domain``/``site`` (e.g.
    from the product), or the regions of a ``site`` that came alone, which is kept."""
    url = reverse("datadog_partner:onboarding")

    def link(site: Site) -> str:
        kept = web_site.url if web_site is not None else site.web_url
        return url + "?" + urlencode({"domain": site.domain, "site": kept})

    sites = [(site, link(site)) for site in choices or datadog_sites().values()]
    context = {"sites": sites, "web_site": web_site}
    return render(request, "datadog_partner/site_picker.html", context)


@flow_page
@require_GET
@transaction.non_atomic_requests
@sensitive_variables()  # ``request`` shows the code in its repr
def callback(request: HttpRequest) -> HttpResponse:
    """Datadog's redirect back: ``?code&state&domain`` or ``?error&error_description``.

    ``site``, ``dd_oid`` and ``dd_org_name`` (sent by Datadog, undocumented) are browser
    input: bounded here, never trusted for identity (see ``connections.identity``).
    """
    names = ("code", "state", "domain", "site", "error", "error_description", "dd_oid",
             "dd_org_name")  # fmt: skip
    try:
        params = query(request, *names)
    except BadParameter as exc:
        return failure_redirect(
            request, fail(failures.BAD_REQUEST, user=request.user, message=f"bad parameter {exc}")
        )
    state = params["state"]
    if params["error"] is not None:
        burn_state(request.session, state)
        reason = {
            "access_denied": failures.ACCESS_DENIED,
            "invalid_scope": failures.INVALID_SCOPE,
        }.get(params["error"], failures.AUTHORIZE_ERROR)
        detail = params["error_description"] or params["error"]
        return failure_redirect(request, fail(reason, user=request.user, detail=detail))
    if not request.user.is_authenticated:
        burn_state(request.session, state)
        return failure_redirect(request, fail(failures.SIGNED_OUT, user=request.user))
    if not params["code"] and state:
        burn_state(request.session, state)
        return failure_redirect(
            request, fail(failures.BAD_REQUEST, user=request.user, message="no code")
        )
    try:
        outcome = connections.connect(
            request.session,
            user=request.user,
            state=state,
            code=params["code"] or "",
            callback_domain=params["domain"],
            callback_site=params["site"],
            org_hint=params["dd_oid"] or "",
        )
    except ConnectFailed as exc:
        return failure_redirect(request, exc)
    except ImproperlyConfigured as exc:
        log_misconfiguration(request, exc)
        return failure_redirect(request, fail(failures.MISCONFIGURED, user=request.user))
    except Exception:
        logger.exception("Datadog connect flow: unexpected error.")
        return failure_redirect(request, fail(failures.UNEXPECTED, user=request.user))
    request.session[RESULT_KEY] = {
        "connection": outcome.connection.pk,
        "code": outcome.code,
        "created": outcome.created,
        "key": outcome.api_key.result,
        "key_reason": outcome.api_key.reason,
        "key_detail": outcome.api_key.detail,
    }
    return HttpResponseRedirect(reverse("datadog_partner:connected"))


@flow_page
@require_GET
def connected(request: HttpRequest) -> HttpResponse:
    """The success page: who is connected to which Datadog organisation, what is left to
    do if anything ("You may now close this tab" only when nothing is), and a way back."""
    result = request.session.get(RESULT_KEY)
    pk = result.get("connection") if isinstance(result, dict) else None
    connection = Connection.objects.filter(pk=pk).first() if isinstance(pk, int) else None
    if connection is None or not permissions.may(request.user, permissions.MANAGE, connection):
        return redirect("datadog_partner:connections")
    context = {"connection": connection, "result": result, "success_url": app_settings.SUCCESS_URL}
    context.update(_key_context(connection))
    return render(request, "datadog_partner/connected.html", context)


@flow_page
@require_GET
def error(request: HttpRequest) -> HttpResponse:
    """The failure page after the callback's redirect; Datadog's words come from the session."""
    try:
        reason = query(request, "reason")["reason"] or failures.STATE_UNKNOWN
    except BadParameter:
        reason = failures.BAD_REQUEST
    flash = request.session.pop(FAILURE_KEY, None)
    if not isinstance(flash, dict) or flash.get("reason") != reason:
        flash = {}
    detail, note = str(flash.get("detail") or ""), str(flash.get("note") or "")
    return failure_page(request, reason, detail=detail, note=note)


# --- A user's connections --------------------------------------------------------------


@form_page
@login_required
@require_GET
def connection_list(request: HttpRequest) -> HttpResponse:
    items = permissions.connections_for_user(request.user)
    url = reverse("datadog_partner:onboarding")
    return render(
        request, "datadog_partner/connection_list.html", {"connections": items, "connect_url": url}
    )


@form_page
@login_required
@require_GET
def connection_detail(request: HttpRequest, pk: int) -> HttpResponse:
    connection = permissions.manageable_connection(request.user, pk)
    notice = request.session.pop(NOTICE_KEY, None)
    if not isinstance(notice, dict) or notice.get("connection") != connection.pk:
        notice = None
    context = {
        "connection": connection,
        "notice": notice,
        "success_url": app_settings.SUCCESS_URL,
        "may_reconnect": permissions.may(request.user, permissions.RECONNECT, connection),
    }
    context.update(_key_context(connection))
    return render(request, "datadog_partner/connection_detail.html", context)


@form_page
@login_required
@require_http_methods(["GET", "POST"])
def disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: what disconnecting does, and a destructive button. POST: disconnect."""
    connection = permissions.manageable_connection(request.user, pk)
    if connection.status == ConnectionStatus.REVOKED:
        return redirect("datadog_partner:connection", pk=connection.pk)
    if request.method == "GET":
        context = {"connection": connection, **_key_context(connection)}
        return render(request, "datadog_partner/disconnect.html", context)
    actor: Any = request.user
    outcome = connections.revoke(connection, reason="Disconnected on this page.", actor=actor)
    # Done, the connection's page says what is left to do in Datadog (for any revoke).
    message = str(DISCONNECTED) if outcome.done else outcome.message
    return _back_to(request, connection, message, ok=outcome.done)


@form_page
@login_required
@require_POST
def reconnect(request: HttpRequest, pk: int) -> HttpResponse:
    connection = permissions.manageable_connection(request.user, pk)
    if not permissions.may(request.user, permissions.RECONNECT, connection):
        return _back_to(request, connection, str(MEMBERS_RECONNECT), ok=False)
    try:
        url = connections.reconnect(connection, session=request.session, user=request.user)
    except ConnectFailed as exc:
        return failure_page(request, exc.reason, detail=exc.detail, note=exc.note)
    return HttpResponseRedirect(url)


@form_page
@login_required
@require_POST
def create_api_key(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Create the API key again": retries the marketplace call for a key_missing connection."""
    connection = permissions.manageable_connection(request.user, pk)
    try:
        outcome = connections.create_api_key(connection)
    except NeedsReconnectError:
        return _back_to(request, connection, str(RECONNECT_FIRST), ok=False)
    except ConfigurationError as exc:
        return misconfigured(request, exc)
    except DatadogPartnerError as exc:
        logger.warning("Datadog connection %s: API key retry failed: %s", connection.pk, exc)
        return _back_to(request, connection, str(KEY_RETRY_FAILED), ok=False)
    if outcome.result == KEY_MISSING:  # the page says why, and what to do
        return _back_to(request, connection, str(KEY_STILL_MISSING), ok=False)
    return _back_to(request, connection, str(KEY_READY), ok=True)


def _back_to(
    request: HttpRequest, connection: Connection, message: str, *, ok: bool
) -> HttpResponse:
    request.session[NOTICE_KEY] = {"connection": connection.pk, "message": message, "ok": ok}
    return redirect("datadog_partner:connection", pk=connection.pk)


def _key_context(connection: Connection) -> dict[str, Any]:
    return {
        "key_missing": connection.status == ConnectionStatus.KEY_MISSING,
        "api_keys_page": api_keys_page_url(connection),
        "revoke_steps": revoke_cures(connection),
    }
