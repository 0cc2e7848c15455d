"""Which ``EXTRA_SITES`` entry points at this sandbox, so its links use that exact site."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpRequest
from django.urls import reverse

from ..regions import Site, extra_sites, is_loopback_url


def base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("datadog_partner_sandbox:home")).rstrip("/")


def this_site(request: HttpRequest) -> Site | None:
    """The registered site served here; on loopback the host may differ (localhost/127.0.0.1)."""
    base = base_url(request)
    sites = list(extra_sites().values())
    for site in sites:
        if site.web_url == base:
            return site
    path = urlsplit(base).path.rstrip("/")
    for site in sites:
        if is_loopback_url(site.web_url) and urlsplit(site.web_url).path.rstrip("/") == path:
            return site
    return None
