"""What arrived per org, its grants and API keys (with revoke buttons) and its faults."""

from __future__ import annotations

import json

from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ..control import Sandbox
from ..forms import FaultsForm
from ..models import SandboxGrant, SandboxOrg, SandboxReceived
from .session import current_user, orm_store

SHOWN_PER_KIND = 50


def org_list(request: HttpRequest) -> HttpResponse:
    orgs = SandboxOrg.objects.annotate(
        events=Count("received", filter=Q(received__kind=SandboxReceived.Kind.EVENT)),
        metrics=Count("received", filter=Q(received__kind=SandboxReceived.Kind.SERIES)),
        logs=Count("received", filter=Q(received__kind=SandboxReceived.Kind.LOGS)),
        checks=Count("received", filter=Q(received__kind=SandboxReceived.Kind.CHECKS)),
    )
    context = {"orgs": orgs, "sandbox_user": current_user(request)}
    return render(request, "datadog_partner_sandbox/org_list.html", context)


def org_detail(request: HttpRequest, pk: int) -> HttpResponse:
    org = get_object_or_404(SandboxOrg, pk=pk)
    return _render_detail(request, org, FaultsForm(instance=org))


def _render_detail(
    request: HttpRequest, org: SandboxOrg, faults_form: FaultsForm, status: int = 200
) -> HttpResponse:
    received = {
        kind: [_shown(item) for item in org.received.filter(kind=kind)[:SHOWN_PER_KIND]]
        for kind in SandboxReceived.Kind.values
    }
    context = {
        "org": org,
        "sandbox_user": current_user(request),
        "events": received[SandboxReceived.Kind.EVENT],
        "series": received[SandboxReceived.Kind.SERIES],
        "logs": received[SandboxReceived.Kind.LOGS],
        "checks": received[SandboxReceived.Kind.CHECKS],
        "grants": org.grants.select_related("user"),
        "api_keys": org.api_keys.all(),
        "faults_form": faults_form,
        "auto_refresh": request.GET.get("refresh") == "1",
    }
    return render(request, "datadog_partner_sandbox/org_detail.html", context, status=status)


def _shown(item: SandboxReceived) -> dict[str, object]:
    payload = item.payload
    if item.kind == SandboxReceived.Kind.SERIES:
        entries = payload.get("series", [])
    elif item.kind in (SandboxReceived.Kind.LOGS, SandboxReceived.Kind.CHECKS):
        entries = payload
    else:
        entries = [payload]
    return {
        "item": item,
        "entries": entries,
        "json": json.dumps(payload, indent=2, sort_keys=True),
    }


def api_keys_page(request: HttpRequest) -> HttpResponse:
    """Datadog's Organization Settings → API Keys, where users revoke the integration's key."""
    user = current_user(request)
    if user is None:
        login = reverse("datadog_partner_sandbox:login")
        return HttpResponseRedirect(f"{login}?next={request.path}")
    return HttpResponseRedirect(
        reverse("datadog_partner_sandbox:org", args=[user.org_id]) + "#api-keys"
    )


@require_POST
def update_faults(request: HttpRequest, pk: int) -> HttpResponse:
    org = get_object_or_404(SandboxOrg, pk=pk)
    form = FaultsForm(request.POST, instance=org)
    if form.is_valid():
        form.save()
        return _back_to(org)
    return _render_detail(request, org, form, status=400)


@require_POST
def revoke_api_key(request: HttpRequest, pk: int) -> HttpResponse:
    org = get_object_or_404(SandboxOrg, pk=pk)
    orm_store().revoke_keys(org.pk)
    return _back_to(org)


@require_POST
def restore_api_key(request: HttpRequest, pk: int) -> HttpResponse:
    org = get_object_or_404(SandboxOrg, pk=pk)
    store = orm_store()
    Sandbox(store).restore_api_key(store.get_org(org.pk))
    return _back_to(org)


@require_POST
def revoke_grant(request: HttpRequest, pk: int) -> HttpResponse:
    grant = get_object_or_404(SandboxGrant, pk=pk)
    orm_store().revoke_grant(grant.pk)
    return _back_to(grant.org)


def _back_to(org: SandboxOrg) -> HttpResponse:
    return HttpResponseRedirect(reverse("datadog_partner_sandbox:org", args=[org.pk]))
