"""The tile (Connect Accounts / Test Authorization) and the sandbox sign-in pages."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from ...conf import app_settings
from .. import SANDBOX_DOMAIN, site_entry
from ..forms import NewUserForm
from ..models import SandboxOrg, SandboxUser
from ..sites import base_url, this_site
from .session import current_user, sign_in, sign_out


def tile(request: HttpRequest) -> HttpResponse:
    """Datadog's integration tile: both buttons go to the Onboarding URL with domain and site."""
    site = this_site(request)
    onboarding = ""
    if site is not None:
        try:
            onboarding = app_settings.BASE_URL + reverse("datadog_partner:onboarding")
        except NoReverseMatch:
            onboarding = ""
        onboarding += "?" + urlencode({"domain": site.domain, "site": site.web_url})
    context = {
        "site": site,
        "onboarding_url": onboarding if site else "",
        "sandbox_user": current_user(request),
        "orgs": SandboxOrg.objects.all(),
        "suggested_entry": {SANDBOX_DOMAIN: site_entry(base_url(request))},
    }
    return render(request, "datadog_partner_sandbox/tile.html", context)


def login(request: HttpRequest) -> HttpResponse:
    """Pick a sandbox "Datadog user" or create one (and its org)."""
    next_url = (
        request.POST.get("next")
        or request.GET.get("next")
        or reverse("datadog_partner_sandbox:home")
    )
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}):
        next_url = reverse("datadog_partner_sandbox:home")
    form = NewUserForm(request.POST if "create" in request.POST else None)
    if request.method == "POST":
        if "user" in request.POST:
            user = get_object_or_404(SandboxUser, pk=request.POST["user"])
            sign_in(request, user)
            return HttpResponseRedirect(next_url)
        if form.is_valid():
            sign_in(request, form.save())
            return HttpResponseRedirect(next_url)
    context = {
        "form": form,
        "users": SandboxUser.objects.select_related("org"),
        "next": next_url,
        "sandbox_user": current_user(request),
    }
    return render(request, "datadog_partner_sandbox/login.html", context)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    sign_out(request)
    return HttpResponseRedirect(reverse("datadog_partner_sandbox:home"))
