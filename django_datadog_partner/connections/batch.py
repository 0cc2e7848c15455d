"""One operation over many connections, as the admin's actions and the commands run it.

Each connection's Datadog error is that connection's result and the loop goes on; a
configuration error (our own client credentials refused) ends it, since every further
connection would fail alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..exceptions import ConfigurationError, DatadogPartnerError
from ..models import Connection

T = TypeVar("T")

STOPPED = "Stopped: every further connection would fail alike."


@dataclass(frozen=True)
class Step(Generic[T]):
    """What happened to one connection: the action's result, or the error it raised."""

    connection: Connection
    result: T | None = None
    error: str = ""
    #: A configuration error: nothing after this connection was tried.
    stopped: bool = False


def each_connection(
    connections: Iterable[Connection], action: Callable[[Connection], T]
) -> Iterator[Step[T]]:
    for connection in connections:
        try:
            result = action(connection)
        except ConfigurationError as exc:
            yield Step(connection, error=f"{exc} {STOPPED}", stopped=True)
            return
        except DatadogPartnerError as exc:
            yield Step(connection, error=str(exc))
        else:
            yield Step(connection, result)
