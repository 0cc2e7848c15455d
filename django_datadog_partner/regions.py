"""The table of Datadog sites and the validation of ``domain`` and ``site`` input.

This is the only module that knows Datadog host names. API and intake URLs always come
from this table for a connection's ``domain``; nothing user-supplied is ever turned into
a back-channel host.

Longer than 300 lines for that one concern, which hosts are Datadog's: the table, the
``EXTRA_SITES`` entries and every check of a ``domain`` or ``site`` against them (custom
subdomains, loopback sandboxes, region agreement, the transport allowlist) stay together
so no other module learns a host name.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.utils.translation import gettext as _

from .conf import app_settings
from .exceptions import InvalidSiteError

MAX_INPUT_LENGTH = 255
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class Site:
    """One Datadog site (region)."""

    name: str
    domain: str
    web_url: str
    api_url: str
    logs_url: str

    @property
    def web_host(self) -> str:
        return urlsplit(self.web_url).netloc

    @property
    def web_host_implies_region(self) -> bool:
        """``app.datadoghq.com`` and custom subdomains say nothing; other web hosts do."""
        return self.web_url != "https://app.datadoghq.com"


def _site(name: str, domain: str, web_host: str) -> Site:
    return Site(
        name=name,
        domain=domain,
        web_url=f"https://{web_host}",
        api_url=f"https://api.{domain}",
        logs_url=f"https://http-intake.logs.{domain}",
    )


DATADOG_SITES: tuple[Site, ...] = (
    _site("US1", "datadoghq.com", "app.datadoghq.com"),
    _site("US3", "us3.datadoghq.com", "us3.datadoghq.com"),
    _site("US5", "us5.datadoghq.com", "us5.datadoghq.com"),
    _site("EU1", "datadoghq.eu", "app.datadoghq.eu"),
    _site("AP1", "ap1.datadoghq.com", "ap1.datadoghq.com"),
    _site("AP2", "ap2.datadoghq.com", "ap2.datadoghq.com"),
    _site("UK1", "uk1.datadoghq.com", "uk1.datadoghq.com"),
    _site("US1-FED", "ddog-gov.com", "app.ddog-gov.com"),
    _site("US2-FED", "us2.ddog-gov.com", "us2.ddog-gov.com"),
)

# Parents under which an organisation may have a single-label custom subdomain.
CUSTOM_SUBDOMAIN_PARENTS = ("datadoghq.com", "datadoghq.eu", "ddog-gov.com")

# Labels that are Datadog infrastructure or other sites, never an organisation's subdomain.
RESERVED_LABELS = frozenset(
    {
        "api", "app", "www", "docs", "status", "intake", "http-intake", "logs", "trace",
        "agent", "process", "orchestrator", "browser-intake", "event-management-intake",
        "webhook-intake", "mcp", "static", "assets", "cdn", "mail", "email", "login",
        "auth", "oauth", "sso", "admin", "support", "help", "blog", "info", "ddog",
        "datadog", "datadoghq", "localhost",
    }
)  # fmt: skip
SITE_LIKE_LABEL = re.compile(r"^(?:us|eu|ap|uk|gov|fed)\d*$")
HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
FORBIDDEN_CHARS = re.compile(r"[\s\x00-\x1f\x7f\\]")


def extra_sites() -> dict[str, Site]:
    """``EXTRA_SITES`` (the bundled sandbox, local tests) as ``Site`` objects."""
    sites = {}
    for domain, urls in app_settings.EXTRA_SITES.items():
        sites[domain] = Site(
            name=str(urls.get("name", domain)),
            domain=domain,
            web_url=str(urls["web_url"]).rstrip("/"),
            api_url=str(urls["api_url"]).rstrip("/"),
            logs_url=str(urls.get("logs_url", urls["api_url"])).rstrip("/"),
        )
    return sites


def all_sites() -> dict[str, Site]:
    """Every site keyed by ``domain``: the Datadog table first, then ``EXTRA_SITES``."""
    sites = {site.domain: site for site in DATADOG_SITES}
    for domain, site in extra_sites().items():
        sites.setdefault(domain, site)
    return sites


def get_site(domain: str) -> Site:
    """The site of a stored, already validated ``domain``."""
    try:
        return all_sites()[domain]
    except KeyError:
        raise InvalidSiteError(
            _("%(domain)s is not a Datadog site this server knows.") % {"domain": domain}
        ) from None


def region_name(domain: str) -> str:
    """The display name of a stored ``domain`` ("US1", "EU1"), else the domain itself."""
    site = all_sites().get(domain)
    return site.name if site is not None else domain


def validate_domain(raw: str | None) -> Site:
    """``domain``: trimmed and lower-cased, then an exact key of the site table."""
    if raw is None or not raw.strip():
        raise InvalidSiteError(_("The Datadog region (domain) is missing."))
    if len(raw) > MAX_INPUT_LENGTH:
        raise InvalidSiteError(_("The Datadog region (domain) is too long."))
    value = raw.strip().lower()
    site = all_sites().get(value)
    if site is None:
        raise InvalidSiteError(_("“%(domain)s” is not a Datadog region.") % {"domain": value[:80]})
    return site


@dataclass(frozen=True)
class WebSite:
    """A validated ``site``: where to send the browser, and which region it implies."""

    url: str
    implied_domain: str | None

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


def validate_site(raw: str | None) -> WebSite:
    """``site``: an ``EXTRA_SITES`` web URL, a site's web host, or a custom subdomain."""
    if raw is None or not raw:
        raise InvalidSiteError(_("The Datadog site (site) is missing."))
    if len(raw) > MAX_INPUT_LENGTH:
        raise InvalidSiteError(_("The Datadog site (site) is too long."))
    for site in extra_sites().values():
        if raw in (site.web_url, site.web_url + "/"):
            return WebSite(url=site.web_url, implied_domain=site.domain)
    if FORBIDDEN_CHARS.search(raw):
        raise InvalidSiteError(_("The Datadog site contains spaces or control characters."))
    host = _host_from_site(raw)
    return _classify_host(host)


def _host_from_site(raw: str) -> str:
    value = raw
    if "://" in value:
        scheme, _sep, value = value.partition("://")
        if scheme.lower() != "https":
            raise InvalidSiteError(_("The Datadog site must be an https:// address."))
    elif value.startswith("//") or re.match(r"^[a-z][a-z0-9+.-]*:[^0-9]", value, re.I):
        raise InvalidSiteError(_("The Datadog site must be a host name."))
    if value.endswith("/"):
        value = value[:-1]
    checks = (
        ("@", _("The Datadog site must not contain a user name.")),
        ("/", _("The Datadog site must not contain a path.")),
        ("?", _("The Datadog site must not contain a query.")),
        ("#", _("The Datadog site must not contain a fragment.")),
        ("[", _("The Datadog site must be a host name, not an IP address.")),
        (":", _("The Datadog site must not contain a port.")),
        ("%", _("The Datadog site must not contain encoded characters.")),
    )
    for char, reason in checks:
        if char in value:
            raise InvalidSiteError(reason)
    if not value:
        raise InvalidSiteError(_("The Datadog site is empty."))
    if not value.isascii():
        raise InvalidSiteError(_("The Datadog site must not contain international characters."))
    return value.lower()


def _classify_host(host: str) -> WebSite:
    if host.endswith("."):
        raise InvalidSiteError(_("The Datadog site must not end with a dot."))
    if _is_ip_address(host):
        raise InvalidSiteError(_("The Datadog site must be a host name, not an IP address."))
    labels = host.split(".")
    if any(label.startswith("xn--") for label in labels):
        raise InvalidSiteError(_("The Datadog site must not contain international characters."))
    if not all(HOST_LABEL.match(label) for label in labels):
        raise InvalidSiteError(_("The Datadog site is not a valid host name."))
    for site in DATADOG_SITES:
        if host == site.web_host:
            implied = site.domain if site.web_host_implies_region else None
            return WebSite(url=site.web_url, implied_domain=implied)
    for parent in CUSTOM_SUBDOMAIN_PARENTS:
        if host.endswith("." + parent):
            label = host[: -len(parent) - 1]
            if "." in label:
                raise InvalidSiteError(
                    _("A Datadog custom subdomain has a single label, like acme.%(parent)s.")
                    % {"parent": parent}
                )
            if label in RESERVED_LABELS or SITE_LIKE_LABEL.match(label):
                raise InvalidSiteError(
                    _("%(host)s is not a Datadog site or an organisation's subdomain.")
                    % {"host": host}
                )
            return WebSite(url=f"https://{host}", implied_domain=None)
    raise InvalidSiteError(_("%(host)s is not a Datadog site.") % {"host": host[:80]})


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # Decimal, octal or hex IPv4 forms (e.g. 2130706433, 0x7f.1) are all-numeric labels.
        return all(re.fullmatch(r"(0x[0-9a-f]+|\d+)", label) for label in host.split("."))
    return True


def check_region_agreement(web_site: WebSite, domain_site: Site) -> None:
    """A region-specific web host must agree with ``domain``; others defer to ``domain``."""
    if web_site.implied_domain and web_site.implied_domain != domain_site.domain:
        raise InvalidSiteError(
            _("The Datadog site %(host)s belongs to %(expected)s, not to %(domain)s.")
            % {
                "host": web_site.host,
                "expected": web_site.implied_domain,
                "domain": domain_site.domain,
            }
        )


def belongs_to_region(web_site: WebSite, domain_site: Site) -> bool:
    """Whether ``web_site`` is a web address of ``domain_site``'s region.

    Stricter than ``check_region_agreement``: ``app.datadoghq.com`` (where users may
    switch region) belongs to US1 only, and a custom subdomain to the regions under its
    parent (``acme.datadoghq.eu``: EU1 only; ``acme.datadoghq.com``: the ``*datadoghq.com``
    regions, since such a name says nothing more).
    """
    if web_site.implied_domain:
        return web_site.implied_domain == domain_site.domain
    host = web_site.host
    if host == DATADOG_SITES[0].web_host:
        return domain_site.domain == DATADOG_SITES[0].domain
    for parent in CUSTOM_SUBDOMAIN_PARENTS:
        if host.endswith("." + parent):
            return domain_site.domain == parent or domain_site.domain.endswith("." + parent)
    return False


def regions_of(web_site: WebSite) -> list[Site]:
    """The sites (regions) ``web_site`` may belong to, by the table (``belongs_to_region``):
    one for a site's own web host, several for ``acme.datadoghq.com`` (any region under
    ``datadoghq.com``) or ``acme.ddog-gov.com``."""
    return [site for site in all_sites().values() if belongs_to_region(web_site, site)]


@dataclass(frozen=True)
class Onboarding:
    """Where the onboarding ``domain`` and ``site`` lead. ``site`` is None when ``site``
    came alone and the table leaves its region open; ``choices`` are then its regions."""

    site: Site | None
    web_site: WebSite
    choices: tuple[Site, ...] = ()


def read_onboarding(domain: str | None, site: str | None) -> Onboarding:
    """Validate the onboarding parameters, deriving a missing one from the table.

    Datadog's tile sends both; older flows sent only ``site`` and a 2023 page mentions only
    ``domain``. ``domain`` alone leads to its region's web address; ``site`` alone to the
    one region it belongs to, or to ``choices``. At least one must be given; raises
    ``InvalidSiteError`` for a value that is not Datadog's.
    """
    domain_site = validate_domain(domain) if _given(domain) else None
    if _given(site):
        web_site = validate_site(site)
    elif domain_site is not None:
        web_site = validate_site(domain_site.web_url)
    else:
        raise InvalidSiteError(_("The Datadog site (site) and region (domain) are missing."))
    if domain_site is not None:
        return Onboarding(domain_site, web_site)
    choices = tuple(regions_of(web_site))
    if len(choices) == 1:
        return Onboarding(choices[0], web_site)
    return Onboarding(None, web_site, choices)


def _given(value: str | None) -> bool:
    return value is not None and bool(value.strip())


def web_url_in_region(domain_site: Site, *candidates: WebSite | None) -> str:
    """The first candidate that belongs to ``domain_site``'s region, else its default web URL."""
    for web_site in candidates:
        if web_site is not None and belongs_to_region(web_site, domain_site):
            return web_site.url
    return domain_site.web_url


def is_loopback_url(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


def allowed_origins() -> frozenset[str]:
    """Every scheme://host[:port] the HTTP client may contact (the transport allowlist)."""
    extra = tuple(
        (str(urls.get("api_url", "")), str(urls.get("logs_url", urls.get("api_url", ""))))
        for urls in app_settings.EXTRA_SITES.values()
    )
    return _origins(extra)


@functools.lru_cache(maxsize=16)
def _origins(extra: tuple[tuple[str, str], ...]) -> frozenset[str]:
    # Cached per EXTRA_SITES value: this runs before every request to Datadog.
    urls = [url for site in DATADOG_SITES for url in (site.api_url, site.logs_url)]
    urls += [url for pair in extra for url in pair]
    origins = set()
    for url in urls:
        parts = urlsplit(url.rstrip("/"))
        origins.add(f"{parts.scheme}://{parts.netloc}")
    return frozenset(origins)
