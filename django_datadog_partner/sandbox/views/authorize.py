"""``/oauth2/v1/authorize``: Datadog's consent page, with its error page and redirects."""

from __future__ import annotations

from urllib.parse import quote

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from .. import SANDBOX_DOMAIN, oauth_server
from ..protocol import Context
from ..sites import this_site
from .session import current_user, orm_store


@require_http_methods(["GET", "POST"])
def authorize(request: HttpRequest) -> HttpResponse:
    """GET shows the consent page; POST is the user's Authorize or Deny.

    The OAuth parameters stay in the query string for both, as on Datadog's own page.
    """
    try:
        auth, problem = oauth_server.parse_authorize(request.GET.dict())
    except oauth_server.AuthorizeError as error:
        # Unknown client or redirect URI: Datadog shows its own page and never redirects.
        return render(
            request, "datadog_partner_sandbox/authorize_error.html", {"error": error}, status=400
        )
    if problem is not None:
        params = {"error": problem.code, "error_description": problem.description}
        return HttpResponseRedirect(oauth_server.callback_url(auth, params))
    user = current_user(request)
    if user is None:
        login = reverse("datadog_partner_sandbox:login")
        return HttpResponseRedirect(f"{login}?next={quote(request.get_full_path())}")
    if request.method == "POST":
        return HttpResponseRedirect(_decide(request, auth, user.org_id, user.pk))
    context = {"auth": auth, "sandbox_user": user, "org": user.org, "client_id": auth.client_id}
    return render(request, "datadog_partner_sandbox/consent.html", context)


def _decide(
    request: HttpRequest, auth: oauth_server.AuthorizeRequest, org_id: int, user_id: int
) -> str:
    if "authorize" not in request.POST:
        params = {"error": "access_denied", "error_description": "The user denied access."}
        return oauth_server.callback_url(auth, params)
    site = this_site(request)
    context = Context(store=orm_store(), domain=site.domain if site else SANDBOX_DOMAIN)
    code = oauth_server.issue_code(context, auth, org_id, user_id)
    org = context.store.get_org(org_id)
    return oauth_server.callback_url(auth, oauth_server.success_params(context, code, org))
