"""Disconnect connections: revoke their tokens at Datadog and delete the stored secrets."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from ...connections import revoke
from ...models import Connection
from ..lifecycle import Result, add_selection_arguments, run_each, selected_connections


class Command(BaseCommand):
    help = (
        "Revoke the given connections at Datadog and delete their stored secrets. When "
        "Datadog cannot be reached they stay 'revoking' and are retried in the background."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_selection_arguments(parser, all_help=None)
        parser.add_argument(
            "--reason",
            default="Revoked with manage.py datadog_partner_revoke.",
            help="why, recorded as each connection's status reason (default: %(default)s)",
        )
        parser.add_argument(
            "--local-only",
            action="store_true",
            help="Delete the stored secrets without asking Datadog (for a revocation Datadog "
            "can never confirm, e.g. tokens that cannot be decrypted). Logged as a warning.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        reason, local_only = options["reason"], options["local_only"]

        def _revoke(connection: Connection) -> Result:
            outcome = revoke(connection, reason=reason, local_only=local_only)
            return outcome.done, outcome.message

        run_each(self, selected_connections(options), _revoke, done="Revoked")
