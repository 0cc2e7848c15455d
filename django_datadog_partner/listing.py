"""What a Datadog listing needs, generated from the settings, and what is wrong with it.

``build()`` gathers the Onboarding URL, Redirect URI and scopes to register in Datadog's
Developer Platform, the uninstallation text, the ``metadata.csv`` rows of the metrics the
host declares (``METRICS``, always with the heartbeat, the listing's "metric check") and the
sample logs (``SAMPLE_LOGS``) exactly as the package sends them to the logs intake, with a
warning for every value Datadog's review would refuse. ``write_files()`` writes
``metadata.csv`` and ``sample_logs.json``. ``datadog_partner_listing`` is its face; the
system checks use ``declaration_problems()``.

Sources: Datadog's *Build an integration* and *Create a log pipeline* guides (metric check,
``metadata.csv``, pipeline, uninstall text); the columns and rules of ``metadata.csv`` are
those ``ddev validate metadata`` (DataDog/integrations-core) enforces.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.urls import reverse
from django.utils import timezone

from . import packing, payloads
from .conf import app_settings
from .metrics_metadata import metadata_csv, metadata_rows, metric_problems, undeclared_metrics

REQUIRED_SCOPE = "api_keys_write"
TEST_HOST_SUFFIXES = (".localhost", ".local", ".test", ".example", ".invalid", ".internal")
LOG_KEYS = {"message", "status", "tags", "attributes", "service", "hostname"}

UNINSTALL_TEXT = """\
## Uninstallation

- Once this integration has been uninstalled, any previous authorizations are revoked.
- Additionally, ensure that all API keys associated with this integration have been
  disabled by searching for the integration name on the API Keys page
  (Organization Settings > API Keys); the key is named "OAuth Client API Key".
- Disconnecting from {product} revokes its access as well; the API key must still be
  disabled in Datadog as above."""


@dataclasses.dataclass
class Listing:
    onboarding_url: str
    redirect_uri: str
    scopes: list[str]
    uninstall_text: str
    metrics: list[dict[str, str]]
    sample_logs: list[dict[str, Any]]
    warnings: list[str]
    files: list[str] = dataclasses.field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build(product: str, *, now: datetime | None = None) -> Listing:
    """The listing of this configuration. Raises ``ImproperlyConfigured`` (a missing
    ``BASE_URL``) or ``NoReverseMatch`` (the app's URLs are not installed)."""
    base_url = app_settings.BASE_URL
    onboarding = base_url + reverse("datadog_partner:onboarding")
    uninstall = (app_settings.UNINSTALL_TEXT or UNINSTALL_TEXT).replace("{product}", product)
    samples, log_problems = sample_logs(now or timezone.now())
    metrics, metric_warnings = metadata_rows()
    warnings = [
        *url_warnings(onboarding), *host_warnings(base_url), *naming_warnings(),
        *uninstall_warnings(uninstall), *metric_warnings, *undeclared_metrics(metrics),
        *log_problems,
    ]  # fmt: skip
    return Listing(
        onboarding_url=onboarding,
        redirect_uri=base_url + reverse("datadog_partner:callback"),
        scopes=[REQUIRED_SCOPE, *(s for s in app_settings.SCOPES if s != REQUIRED_SCOPE)],
        uninstall_text=uninstall,
        metrics=metrics,
        sample_logs=samples,
        warnings=warnings,
    )


def write_files(listing: Listing, directory: Path) -> list[str]:
    """``metadata.csv`` (when there are metrics) and ``sample_logs.json`` (when there are
    samples) in ``directory``, created if needed; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if listing.metrics:
        (directory / "metadata.csv").write_text(metadata_csv(listing.metrics), encoding="utf-8")
        written.append(str(directory / "metadata.csv"))
    if listing.sample_logs:
        (directory / "sample_logs.json").write_bytes(intake_body(listing.sample_logs))
        written.append(str(directory / "sample_logs.json"))
    listing.files = written
    return written


# --- registered URLs and names -----------------------------------------------------------------


def url_warnings(url: str) -> list[str]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    warnings = []
    if parts.scheme != "https":
        warnings.append(f"{url} is not https: Datadog sends authorization codes to it.")
    if _is_local(host):
        warnings.append(
            f"{host} is a local or test host: Datadog users cannot reach it. Register it only "
            "on the test OAuth client, and remove it before submitting the listing."
        )
    return warnings


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(TEST_HOST_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def host_warnings(base_url: str) -> list[str]:
    """Django must accept the host Datadog redirects the browser to."""
    host, _port = split_domain_port(urlsplit(base_url).netloc)
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if validate_host(host, allowed):
        return []
    return [
        f"ALLOWED_HOSTS does not accept {host}, the host of BASE_URL: Django would answer "
        "Datadog's redirect to the Redirect URI with 400 Bad Request."
    ]


def naming_warnings() -> list[str]:
    if app_settings.SOURCE_TYPE_NAME == "my_apps":
        return [
            "SOURCE_TYPE_NAME is the default 'my_apps': set it (and so the log source) to "
            "your integration's name."
        ]
    return []


def uninstall_warnings(text: str) -> list[str]:
    """Datadog's required uninstall wording, and no link a customer cannot open."""
    lowered = text.lower()
    warnings = []
    if "revoked" not in lowered:
        warnings.append("The uninstall text should say that previous authorizations are revoked.")
    if "api key" not in lowered:
        warnings.append(
            "The uninstall text should tell users to disable the integration's API keys on "
            "the API Keys page: Datadog does not revoke them on uninstall."
        )
    if (
        "oauth client api key" not in lowered
        and app_settings.SOURCE_TYPE_NAME.lower() not in lowered
    ):
        warnings.append(
            'The uninstall text should name the key users search for ("OAuth Client API Key").'
        )
    for link in re.findall(r"https?://[^\s)>\]\"']+", text):
        warnings += [f"The uninstall text links {w}" for w in url_warnings(link.rstrip(".,;"))]
    return warnings


# --- sample logs -------------------------------------------------------------------------------


def sample_logs(now: datetime) -> tuple[list[dict[str, Any]], list[str]]:
    """``SAMPLE_LOGS`` as sent: ``send_log()``'s entry with its ``outbox_id`` attribute."""
    entries, problems = [], []
    for number, spec in enumerate(app_settings.SAMPLE_LOGS, 1):
        try:
            entries.append(dict(payloads.as_sent("log", _log_entry(spec, now), number)))
        except (TypeError, ValueError) as exc:
            problems.append(f"SAMPLE_LOGS[{number - 1}]: {exc}")
            continue
        if any(
            isinstance(value, list | tuple) for value in (spec.get("attributes") or {}).values()
        ):
            problems.append(
                f"SAMPLE_LOGS[{number - 1}]: an attribute holds an array; Datadog cannot "
                "facet arrays, so its log guidelines ask for none."
            )
    return entries, problems


def _log_entry(spec: Any, now: datetime) -> dict[str, Any]:
    if not isinstance(spec, Mapping) or "message" not in spec:
        raise TypeError("each sample is a dict of send_log() arguments, with a 'message'.")
    if unknown := sorted(set(spec) - LOG_KEYS):
        raise TypeError(f"unknown keys {unknown}; use {sorted(LOG_KEYS)}.")
    return payloads.log_entry(
        spec["message"], timestamp=now, source=app_settings.LOG_SOURCE,
        service=spec.get("service") or app_settings.LOG_SERVICE,
        status=spec.get("status", "info"), tags=spec.get("tags", ()),
        attributes=spec.get("attributes"), hostname=spec.get("hostname"),
    )  # fmt: skip


def intake_body(entries: list[dict[str, Any]]) -> bytes:
    """The logs intake's request body of ``entries``, decompressed (packing's own join);
    the first body when there are more samples than one request takes."""
    bodies = packing.pack(
        [payloads.encode(entry) for entry in entries],
        dataclasses.replace(packing.LOGS_BATCH, gzip=False),
    )
    return bodies[0].body


def declaration_problems() -> list[tuple[str, str]]:
    """(setting, problem) of ``METRICS`` and ``SAMPLE_LOGS``, for the system checks."""
    found = [("METRICS", problem) for problem in metric_problems(app_settings.METRICS)]
    found += [("SAMPLE_LOGS", problem) for problem in sample_logs(timezone.now())[1]]
    return found
