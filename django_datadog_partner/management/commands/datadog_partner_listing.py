"""What to paste into Datadog's Developer Platform, and what the listing must contain."""

from __future__ import annotations

import ipaddress
from argparse import ArgumentParser
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.urls import NoReverseMatch, reverse

from ...conf import app_settings

REQUIRED_SCOPE = "api_keys_write"
TEST_HOST_SUFFIXES = (".localhost", ".local", ".test", ".example", ".invalid", ".internal")

UNINSTALL_TEXT = """\
## Uninstallation

- Once this integration has been uninstalled, any previous authorizations are revoked.
- Additionally, ensure that all API keys associated with this integration have been
  disabled by searching for the integration name on the API Keys page
  (Organization Settings > API Keys); the key is named "OAuth Client API Key".
- Disconnecting from {product} revokes its access as well; the API key must still be
  disabled in Datadog as above."""


REQUIREMENTS = """\
Listing requirements:

1. Uninstallation instructions (paste into the listing):

   {uninstall}

2. Logs: source "{source}", service "{service}". The source must be lowercase, equal the
   integration name and not be editable by users; the service is the producing service (or
   the source). Integrations that send logs must ship a log pipeline (Date, Message, Status
   and Service remappers).
3. Metrics: if the integration sends metrics (send_metric), emit a "metric check" metric on
   every run and list every metric in metadata.csv.
4. Events use source_type_name "{source_type}". At least one dashboard is required, and the
   integration must submit telemetry.
5. Before submitting: remove test URLs. Submission issues new production credentials (shown
   once): set CLIENT_ID and CLIENT_SECRET to them."""


class Command(BaseCommand):
    help = (
        "Print the Onboarding URL, Redirect URI and scopes to register in Datadog's Developer "
        "Platform, warnings about test values, and the listing requirements."
    )
    # It reports on the configuration itself (e.g. a plain-http BASE_URL), so it must run
    # even when the system checks would stop other commands.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--strict", action="store_true", help="exit non-zero when there are warnings"
        )
        parser.add_argument("--product", default="our product", help="your product's name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            base_url = app_settings.BASE_URL
            scopes = [REQUIRED_SCOPE, *(s for s in app_settings.SCOPES if s != REQUIRED_SCOPE)]
            onboarding = base_url + reverse("datadog_partner:onboarding")
            redirect_uri = base_url + reverse("datadog_partner:callback")
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        except NoReverseMatch as exc:
            raise CommandError(
                "The app's URLs are not installed: add "
                "path('datadog/', include('django_datadog_partner.urls')) to your URLconf."
            ) from exc

        write = self.stdout.write
        write("Developer Platform > your listing > Configuration Method > API with OAuth:\n")
        write(f"  Onboarding URL:  {onboarding}")
        write(f"  Redirect URI:    {redirect_uri}")
        write(f"  Scopes:          {' '.join(scopes)}")
        write(f"    ({REQUIRED_SCOPE} is required: only the API key it creates can submit data)\n")

        warnings = _url_warnings(onboarding) + _naming_warnings()
        for warning in warnings:
            self.stderr.write(self.style.WARNING(f"WARNING: {warning}"))
        if warnings:
            write("")

        write(
            REQUIREMENTS.format(
                uninstall=UNINSTALL_TEXT.format(product=options["product"]).replace("\n", "\n   "),
                source=app_settings.LOG_SOURCE,
                service=app_settings.LOG_SERVICE,
                source_type=app_settings.SOURCE_TYPE_NAME,
            )
        )
        if warnings and options["strict"]:
            raise CommandError(f"{len(warnings)} warning(s): fix them before submitting.")


def _url_warnings(url: str) -> list[str]:
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


def _naming_warnings() -> list[str]:
    if app_settings.SOURCE_TYPE_NAME == "my_apps":
        return [
            "SOURCE_TYPE_NAME is the default 'my_apps': set it (and so the log source) to "
            "your integration's name."
        ]
    return []
