"""System checks of the sandbox app (ids ``datadog_partner.E030`` to ``E039``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Tags, register
from django.urls import NoReverseMatch, reverse


@register(Tags.urls)
def check_sandbox_urls(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    try:
        reverse("datadog_partner_sandbox:home")
    except NoReverseMatch:
        return [
            Error(
                "django_datadog_partner.sandbox is installed but its URLs are not included.",
                hint='Add path("sandbox/", include("django_datadog_partner.sandbox.urls")) to '
                "your URLconf, and register it with DATADOG_PARTNER['EXTRA_SITES'] = "
                '{"sandbox.localhost": site_entry(BASE_URL + "/sandbox")}.',
                id="datadog_partner.E030",
            )
        ]
    return []
