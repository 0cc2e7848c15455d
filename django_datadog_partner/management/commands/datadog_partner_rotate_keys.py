"""Re-encrypt every stored secret with the newest key in ENCRYPTION_KEYS."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...connections import rotate_keys, secrets_on_retired_keys
from ...connections.keyrotation import DEFAULT_BATCH_SIZE

LIST_AT_MOST = 50


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (tokens, API keys, PKCE verifiers) with the first "
        "key of ENCRYPTION_KEYS. Idempotent and resumable; exits non-zero while any value "
        "still needs a retired key."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help="rows read per query (default: %(default)s)",
        )
        parser.add_argument(
            "--check", action="store_true", help="only report values on retired keys"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = max(1, options["batch_size"])
        if not options["check"]:
            progress = self.stdout.write if options["verbosity"] > 1 else None
            report = rotate_keys(batch_size=batch_size, progress=progress)
            line = (
                f"Re-encrypted {report.rotated} secret values; "
                f"{report.already_current} were already on the newest key."
            )
            if report.changed_meanwhile:
                line += f" {report.changed_meanwhile} were rewritten by the app meanwhile."
            self.stdout.write(line)
        remaining = secrets_on_retired_keys(batch_size=batch_size)
        if remaining:
            listed = "\n  ".join(remaining[:LIST_AT_MOST])
            more = (
                f"\n  … and {len(remaining) - LIST_AT_MOST} more"
                if len(remaining) > LIST_AT_MOST
                else ""
            )
            raise CommandError(
                f"{len(remaining)} values remain on retired keys or open with no configured "
                f"key:\n  {listed}{more}\nKeep the old keys in ENCRYPTION_KEYS until this "
                "reports zero (values no configured key opens belong to connections that "
                "must be reconnected)."
            )
        self.stdout.write(
            self.style.SUCCESS(
                "0 values remain on retired keys: every key but the first can be removed "
                "from ENCRYPTION_KEYS."
            )
        )
