"""A user's connections: the list, a connection's page, disconnect, reconnect and
creating the API key again. Thin: the operations live in ``connections``; a connection the
user may not manage answers the package's 404 page. The POSTs check CSRF themselves (as
the onboarding page and the admin do), whatever the host's middleware."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import connections, permissions
from ..conf import app_settings
from ..connections.api_keys import KEY_MISSING
from ..connections.results import ConnectFailed
from ..exceptions import (
    ConfigurationError,
    DatadogPartnerError,
    NeedsReconnectError,
)
from ..models import Connection, ConnectionStatus
from .pages import (
    NOTICE_KEY,
    failure_page,
    form_page,
    key_context,
    misconfigured,
)

logger = logging.getLogger("django_datadog_partner")


RECONNECT_FIRST = _("This connection must be reconnected before an API key can be created.")
KEY_RETRY_FAILED = _(
    "Datadog could not be reached or refused the request. Try again in a minute, or reconnect."
)
#: The status reason the customer and the admin both read later: where it was done.
DISCONNECTED_HERE = _("Disconnected from the connection page.")
KEY_READY = _("The API key is in place: data can be sent to Datadog.")
KEY_STILL_MISSING = _("Datadog still has not given us an API key.")
DISCONNECTED = _("Disconnected: Datadog revoked this integration's access.")
MEMBERS_RECONNECT = _(
    "Only a member of the connection's owner can reconnect it: the Datadog login used to "
    "reconnect decides which Datadog organisation receives the data. Send them this page."
)


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
    context.update(key_context(connection))
    return render(request, "datadog_partner/connection_detail.html", context)


@form_page
@login_required
@csrf_protect
@require_http_methods(["GET", "POST"])
def disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: what disconnecting does, and a destructive button. POST: disconnect."""
    connection = permissions.manageable_connection(request.user, pk)
    if connection.status == ConnectionStatus.REVOKED:
        return redirect("datadog_partner:connection", pk=connection.pk)
    if request.method == "GET":
        context = {"connection": connection, **key_context(connection)}
        return render(request, "datadog_partner/disconnect.html", context)
    actor: Any = request.user
    outcome = connections.revoke(connection, reason=str(DISCONNECTED_HERE), actor=actor)
    # Done, the connection's page says what is left to do in Datadog (for any revoke).
    message = str(DISCONNECTED) if outcome.done else outcome.message
    return _back_to(request, connection, message, ok=outcome.done)


@form_page
@login_required
@csrf_protect
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
@csrf_protect
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
