"""The connect flow's pages: onboarding (Datadog's Connect Accounts lands here, the user
confirms), the site picker, the OAuth callback, and the success and failure pages it
leads to. Thin: the operations live in ``connections``."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods

from .. import connections, failures, permissions
from ..conf import app_settings
from ..connections.authorization import burn_state
from ..connections.results import ConnectFailed, fail
from ..exceptions import (
    InvalidSiteError,
)
from ..models import Connection
from ..regions import Site, WebSite, check_region_agreement, read_onboarding
from ..regions import all_sites as datadog_sites
from .pages import (
    FAILURE_KEY,
    RESULT_KEY,
    BadParameter,
    failure_page,
    flow_page,
    form_page,
    key_context,
    log_misconfiguration,
    query,
)

logger = logging.getLogger("django_datadog_partner")


def failure_redirect(request: HttpRequest, exc: ConnectFailed) -> HttpResponse:
    """PRG to the error page, so ``code`` and ``state`` leave the address bar."""
    request.session[FAILURE_KEY] = {"reason": exc.reason, "detail": exc.detail, "note": exc.note}
    return HttpResponseRedirect(
        reverse("datadog_partner:error") + "?" + urlencode({"reason": exc.reason})
    )


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
        reason = {
            "access_denied": failures.ACCESS_DENIED,
            "invalid_scope": failures.INVALID_SCOPE,
        }.get(params["error"], failures.AUTHORIZE_ERROR)
        # Quoted as Datadog's words only when Datadog ends this browser's live flow: anyone
        # can send a link with an ``error_description`` of their own.
        ours = burn_state(request.session, state)
        detail = (params["error_description"] or params["error"]) if ours else ""
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
    context.update(key_context(connection))
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
