"""Forms of the sandbox pages: sign in as a "Datadog user", and an org's fault switches."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import SandboxOrg, SandboxUser


class NewUserForm(forms.Form):
    """A new sandbox user in a new or existing org (matched by name)."""

    name = forms.CharField(label=_("Your name"), max_length=100, initial="Datadog User")
    org_name = forms.CharField(label=_("Datadog organization"), max_length=100, initial="Acme")

    def save(self) -> SandboxUser:
        org = SandboxOrg.objects.filter(name=self.cleaned_data["org_name"]).first()
        if org is None:
            org = SandboxOrg.objects.create(name=self.cleaned_data["org_name"])
        return SandboxUser.objects.create(org=org, name=self.cleaned_data["name"])


class FaultsForm(forms.ModelForm):
    class Meta:
        model = SandboxOrg
        fields = (
            "intake_fault",
            "intake_fault_times",
            "rate_limit_reset",
            "slow_seconds",
            "refresh_invalid_grant",
            "key_creation_fault",
            "restorable_key_conflict",
            "bare_callback",
            "revoke_needs_bearer",
            "rotate_refresh_tokens",
            "series_errors",
            "check_host_required",
        )
