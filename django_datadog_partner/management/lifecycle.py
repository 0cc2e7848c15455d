"""What the lifecycle commands share: choosing connections, and a per-connection loop.

Each connection's failure is reported and the loop goes on (``connections.batch``); the
command ends with a summary and exits non-zero if anything failed or the loop stopped.

Commands act as the operator and apply no per-user permission: whoever can run
``manage.py`` already holds the settings, the database and the encryption keys.
"""

from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Callable, Iterable
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import QuerySet

from ..connections.batch import each_connection
from ..models import Connection

#: The largest primary key a database stores (a 64-bit signed integer).
LARGEST_ID = 2**63 - 1

#: ``(succeeded, message)`` for one connection.
Result = tuple[bool, str]


def add_selection_arguments(parser: ArgumentParser, *, all_help: str | None) -> None:
    """``ID …`` positional ids, plus ``--all`` when ``all_help`` says what it selects."""
    parser.add_argument("ids", nargs="*", type=int, metavar="ID", help="connection ids")
    if all_help:
        parser.add_argument("--all", action="store_true", help=all_help)


def selected_connections(
    options: dict[str, Any], everything: QuerySet[Connection] | None = None
) -> list[Connection]:
    """The connections named on the command line (or ``everything`` with ``--all``)."""
    ids: list[int] = options["ids"]
    use_all = bool(options.get("all"))
    if use_all and ids:
        raise CommandError("Give connection ids or --all, not both.")
    if use_all and everything is not None:
        return list(everything.order_by("pk"))
    if not ids:
        hint = " (or --all)" if everything is not None else ""
        raise CommandError(f"Give at least one connection id{hint}.")
    # Ids past a 64-bit key name no connection (the database would refuse the query).
    found = Connection.objects.in_bulk([pk for pk in ids if 0 < pk <= LARGEST_ID])
    missing = [str(pk) for pk in ids if pk not in found]
    if missing:
        raise CommandError(f"No Datadog connection with id {', '.join(missing)}.")
    return [found[pk] for pk in dict.fromkeys(ids)]


def run_each(
    command: BaseCommand,
    connections: Iterable[Connection],
    action: Callable[[Connection], Result],
    *,
    done: str,
) -> None:
    """Run ``action`` per connection, print one line each and a summary; fail at the end."""
    total = failed = 0
    for step in each_connection(connections, action):
        total += 1
        connection = step.connection
        label = f"#{connection.pk} {connection.label}"
        if step.stopped:
            raise CommandError(f"{label}: {step.error}")
        ok, message = step.result if step.result is not None else (False, step.error)
        failed += not ok
        style = command.style.SUCCESS if ok else command.style.ERROR
        command.stdout.write(style(f"{label}: {message}"))
    summary = f"{done} {total - failed} of {total} connection(s)."
    if failed:
        raise CommandError(f"{summary} {failed} failed (see above).")
    command.stdout.write(summary)
