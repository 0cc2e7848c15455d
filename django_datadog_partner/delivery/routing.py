"""First claim of a row: ``pre_event_send`` once, then the row goes to its owner's
connections.

A row is written with an owner reference only (the save path looks nothing up). On its
first claim it becomes the row for the owner's first connection, and a copy is added per
further connection (revoked ones excluded), in one transaction; an owner with none closes
the row as ``no_connection``. The stored payload is what every retry sends.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from django.db import transaction

from .. import outbox
from ..models import Connection, OutboxEvent, OutboxStatus
from ..signals import pre_event_send
from .outcomes import Recorder

logger = logging.getLogger("django_datadog_partner.delivery")


def prepare(token: str, rows: list[OutboxEvent], recorder: Recorder) -> list[OutboxEvent]:
    """The claimed rows to send, routed; unrouted ones are recorded as ``no_connection``."""
    fresh = [row for row in rows if not row.prepared]
    if not fresh:
        return rows
    _announce(fresh)
    copies, unrouted = _route(row for row in fresh if row.connection_id is None)
    unrouted_ids = {row.pk for row in unrouted}
    _save(token, [row for row in fresh if row.pk not in unrouted_ids], fresh, copies)
    recorder.finish(unrouted, OutboxStatus.NO_CONNECTION, "no_connection", "", attempted=False)
    return [row for row in rows if row.pk not in unrouted_ids] + copies


def _announce(fresh: list[OutboxEvent]) -> None:
    """``pre_event_send`` once per row; a failing receiver never stops delivery."""
    for row in fresh:
        try:
            pre_event_send.send(sender=OutboxEvent, outbox=row, payload=row.payload)
        except Exception:
            logger.exception("A pre_event_send receiver failed for outbox row %s.", row.pk)
        row.prepared = True


def _route(rows: Iterable[OutboxEvent]) -> tuple[list[OutboxEvent], list[OutboxEvent]]:
    """Give owner rows their first connection; returns (copies for the others, unrouted)."""
    rows = list(rows)
    targets = _owners_connections(rows)
    copies: list[OutboxEvent] = []
    unrouted: list[OutboxEvent] = []
    for row in rows:
        conns = targets.get((row.owner_content_type_id or 0, row.owner_object_id), [])
        if not conns:
            unrouted.append(row)
            continue
        row.connection_id = conns[0]
        copies.extend(_copy(row, conn_id) for conn_id in conns[1:])
    return copies, unrouted


def _save(
    token: str, routed: list[OutboxEvent], fresh: list[OutboxEvent], copies: list[OutboxEvent]
) -> None:
    by_connection: dict[int | None, list[int]] = defaultdict(list)
    for row in routed:
        by_connection[row.connection_id].append(row.pk)
    with transaction.atomic():
        for connection_id, ids in by_connection.items():
            OutboxEvent.objects.filter(pk__in=ids, lease_token=token).update(
                prepared=True, connection_id=connection_id
            )
        if pre_event_send.has_listeners(OutboxEvent):
            outbox.update_each(token, fresh, ["payload"], release=False)
        if copies:
            OutboxEvent.objects.bulk_create(copies)


def _owners_connections(rows: Iterable[OutboxEvent]) -> dict[tuple[int, str], list[int]]:
    wanted: dict[int, set[str]] = defaultdict(set)
    for row in rows:
        wanted[row.owner_content_type_id or 0].add(row.owner_object_id)
    found: dict[tuple[int, str], list[int]] = defaultdict(list)
    for content_type_id, object_ids in wanted.items():
        conns = (
            Connection.objects.filter(
                owner_content_type_id=content_type_id, owner_object_id__in=object_ids
            )
            .not_ended()
            .order_by("pk")
            .values_list("owner_object_id", "pk")
        )
        for object_id, pk in conns:
            found[(content_type_id, object_id)].append(pk)
    return found


def _copy(row: OutboxEvent, connection_id: int) -> OutboxEvent:
    return OutboxEvent(
        kind=row.kind, owner_content_type_id=row.owner_content_type_id,
        owner_object_id=row.owner_object_id, connection_id=connection_id, payload=row.payload,
        source=row.source, action=row.action, prepared=True, event_time=row.event_time,
        next_attempt_at=row.next_attempt_at,
        lease_until=row.lease_until, lease_token=row.lease_token,
    )  # fmt: skip
