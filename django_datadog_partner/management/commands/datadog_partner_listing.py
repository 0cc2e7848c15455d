"""What to paste into Datadog's Developer Platform, what the listing must contain, and the
files it uploads (``metadata.csv``, sample logs); the work is ``listing``'s."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.urls import NoReverseMatch

from ... import listing
from ...conf import app_settings

REQUIREMENTS = """\
Listing requirements:

1. Uninstallation instructions (paste into the listing):

   {uninstall}

2. Logs: source "{source}", service "{service}". The source must be lowercase, equal the
   integration name and not be editable by users; the service is the producing service (or
   the source). Integrations that send logs must ship a log pipeline (Date, Message, Status
   and Service remappers): build it from sample logs (SAMPLE_LOGS, written to
   sample_logs.json by --output-dir).
3. Metrics: if the integration sends metrics (send_metric), emit a "metric check" metric on
   every run and list every metric in metadata.csv ({metrics}).
4. Events use source_type_name "{source_type}". At least one dashboard is required, and the
   integration must submit telemetry.
5. Before submitting: remove test URLs. Submission issues new production credentials (shown
   once): set CLIENT_ID and CLIENT_SECRET to them."""


class Command(BaseCommand):
    help = (
        "Print the Onboarding URL, Redirect URI and scopes to register in Datadog's Developer "
        "Platform, warnings about test values, and the listing requirements; write "
        "metadata.csv and sample_logs.json with --output-dir."
    )
    # It reports on the configuration itself (e.g. a plain-http BASE_URL), so it must run
    # even when the system checks would stop other commands.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--strict", action="store_true", help="exit non-zero when there are warnings"
        )
        parser.add_argument("--product", default="our product", help="your product's name")
        parser.add_argument(
            "--output-dir",
            metavar="DIR",
            help="write metadata.csv and sample_logs.json (when SAMPLE_LOGS is set) there",
        )
        parser.add_argument(
            "--json", action="store_true", help="print one JSON object instead of text"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            kit = listing.build(options["product"])
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        except NoReverseMatch as exc:
            raise CommandError(
                "The app's URLs are not installed: add "
                "path('datadog/', include('django_datadog_partner.urls')) to your URLconf."
            ) from exc
        if options["output_dir"]:
            listing.write_files(kit, Path(options["output_dir"]))
        if options["json"]:
            self.stdout.write(json.dumps(kit.as_json(), indent=2))
        else:
            self._print(kit)
        if kit.warnings and options["strict"]:
            raise CommandError(f"{len(kit.warnings)} warning(s): fix them before submitting.")

    def _print(self, kit: listing.Listing) -> None:
        write = self.stdout.write
        write("Developer Platform > your listing > Configuration Method > API with OAuth:\n")
        write(f"  Onboarding URL:  {kit.onboarding_url}")
        write(f"  Redirect URI:    {kit.redirect_uri}")
        write(f"  Scopes:          {' '.join(kit.scopes)}")
        required = listing.REQUIRED_SCOPE
        write(f"    ({required} is required: only the API key it creates can submit data)\n")
        for warning in kit.warnings:
            self.stderr.write(self.style.WARNING(f"WARNING: {warning}"))
        if kit.warnings:
            write("")
        names = ", ".join(row["metric_name"] for row in kit.metrics) or "none declared"
        write(
            REQUIREMENTS.format(
                uninstall=kit.uninstall_text.replace("\n", "\n   "),
                source=app_settings.LOG_SOURCE,
                service=app_settings.LOG_SERVICE,
                source_type=app_settings.SOURCE_TYPE_NAME,
                metrics=names,
            )
        )
        for path in kit.files:
            write(f"Wrote {path}")
