"""Refresh access tokens now (they are otherwise refreshed on demand)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from ...connections import refresh
from ...models import Connection
from ..lifecycle import Result, add_selection_arguments, run_each, selected_connections


class Command(BaseCommand):
    help = "Refresh the access token of the given connections now."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_selection_arguments(
            parser, all_help="every connection whose tokens are in use (active, key missing, "
            "key rejected)",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        usable = Connection.objects.holding_tokens()
        run_each(self, selected_connections(options, usable), _refresh, done="Refreshed")


def _refresh(connection: Connection) -> Result:
    replaced = refresh(connection, force=True)
    until = f"valid until {connection.expires_at:%Y-%m-%d %H:%M %Z}"
    if replaced:
        return True, f"new access token, {until}."
    return True, f"another process refreshed it just now, {until}."
