"""Which host models become Datadog events, and the public ``send_*`` API (events, metric
points, log entries, service checks).

Everything goes through the transactional outbox: the receiver (or ``send_*``) writes one
``OutboxEvent`` row in the caller's transaction on the instance's database, and asks for a
coalesced kick after commit. Nothing here looks up connections or talks to the network.

Receivers are connected only for registered models (with a ``dispatch_uid``), so every
other model keeps Django's no-receiver fast path. ``raw=True`` saves (``loaddata``) send
nothing; ``QuerySet.update()``, ``bulk_create()`` and raw SQL send no signal at all.

Longer than 400 lines for one concern, what enters the outbox: the registry, the save
path's receiver and the four ``send_*`` calls share how a destination is resolved
(``_destination``) and the coalesced kick, so every way in names its owner and connection
the same way.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import connections, models, router
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from . import outbox, payloads
from .conf import SETTING_NAME, app_settings, resolve_callable
from .delivery import kick
from .models import Connection, OutboxEvent, OutboxKind, owner_reference

logger = logging.getLogger("django_datadog_partner.tracking")

ACTIONS = ("created", "updated", "deleted")
METRIC_MAX_FUTURE = timedelta(minutes=10)

Builder = Callable[[payloads.Change], Mapping[str, Any] | None]
OwnerResolver = Callable[[Any], models.Model | None]
ModelT = TypeVar("ModelT", bound=type[models.Model])


@dataclass(frozen=True)
class Tracking:
    """How one model is tracked: actions, event builder, owner, field options."""

    model: type[models.Model]
    on: frozenset[str]
    owner: str | OwnerResolver
    event: Builder | None
    options: payloads.FieldOptions

    @functools.cached_property
    def source(self) -> str:
        return self.model._meta.label_lower

    @functools.cached_property
    def owner_key(self) -> tuple[str, type[models.Model]] | None:
        """(column attribute, owner model) of a foreign key to the owner's primary key."""
        if not isinstance(self.owner, str):
            return None
        model_field: Any = self.model._meta.get_field(self.owner)
        if not model_field.target_field.primary_key:
            return None
        return model_field.attname, model_field.related_model

    def stored_event(
        self,
        instance: models.Model,
        action: str,
        now: datetime,
        update_fields: frozenset[str] | None,
    ) -> str | None:
        """The event as the outbox stores it (JSON text), or None if the builder skipped it."""
        if self.event is None:
            return payloads.default_event_stored(
                instance, action, now, update_fields, self.options,
                source_type_name=app_settings.SOURCE_TYPE_NAME,
            )  # fmt: skip
        built = self.event(payloads.Change(instance, action, now, update_fields, self.options))
        return None if built is None else json.dumps(payloads.finalize_event(built))


class Registry:
    """Tracked models; ``register`` works as a call or as a class decorator."""

    def __init__(self) -> None:
        self._entries: dict[type[models.Model], Tracking] = {}

    @overload
    def register(self, model: ModelT, **options: Any) -> ModelT: ...

    @overload
    def register(self, model: None = None, **options: Any) -> Callable[[ModelT], ModelT]: ...

    def register(self, model: Any = None, **options: Any) -> Any:
        if model is None:
            return lambda cls: self.register(cls, **options)
        self._add(model, **options)
        return model

    def _add(
        self,
        model: type[models.Model],
        *,
        owner: str | OwnerResolver,
        on: Iterable[str] = ACTIONS,
        event: Builder | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        mask: Sequence[str] = (),
    ) -> None:
        label = model._meta.label
        actions = frozenset(on)
        if not actions or not actions <= set(ACTIONS):
            raise ImproperlyConfigured(f"Tracking {label}: 'on' must be a subset of {ACTIONS}.")
        if isinstance(owner, str):
            _foreign_key(model, owner)
        for name in [*(include or ()), *exclude, *mask]:
            _field(model, name)
        options = payloads.FieldOptions(
            include=tuple(include) if include is not None else None,
            exclude=tuple(exclude),
            mask=tuple(mask),
        )
        self.unregister(model)
        self._entries[model] = Tracking(model, actions, owner, event, options)
        if actions & {"created", "updated"}:
            post_save.connect(_on_save, sender=model, weak=False, dispatch_uid=_uid(model, "save"))
        if "deleted" in actions:
            post_delete.connect(
                _on_delete, sender=model, weak=False, dispatch_uid=_uid(model, "delete")
            )

    def unregister(self, model: type[models.Model]) -> None:
        if self._entries.pop(model, None) is not None:
            post_save.disconnect(sender=model, dispatch_uid=_uid(model, "save"))
            post_delete.disconnect(sender=model, dispatch_uid=_uid(model, "delete"))

    def get(self, model: type[models.Model]) -> Tracking | None:
        return self._entries.get(model)

    def models(self) -> list[type[models.Model]]:
        return list(self._entries)

    def register_from_settings(self) -> None:
        """Register ``DATADOG_PARTNER["TRACKED_MODELS"]`` (called once, from ``ready()``)."""
        for label, raw in app_settings.TRACKED_MODELS.items():
            key = f"TRACKED_MODELS[{label!r}]"
            try:
                model = apps.get_model(label)
            except (LookupError, ValueError) as exc:
                raise ImproperlyConfigured(
                    f"{SETTING_NAME}[{key}]: no such model ({exc})."
                ) from None
            options = dict(raw)
            if "owner" not in options:
                raise ImproperlyConfigured(f"{SETTING_NAME}[{key}] needs an 'owner'.")
            owner = options["owner"]
            if callable(owner) or "." in str(owner):
                options["owner"] = resolve_callable(owner, key)
            if options.get("event") is not None:
                options["event"] = resolve_callable(options["event"], key)
            self.register(model, **options)


registry = Registry()
register = registry.register


def _uid(model: type[models.Model], signal: str) -> str:
    return f"datadog_partner.tracking:{model._meta.label_lower}:{signal}"


def _field(model: type[models.Model], name: str) -> Any:
    try:
        return model._meta.get_field(name)
    except FieldDoesNotExist:
        raise ImproperlyConfigured(f"Tracking {model._meta.label}: no field {name!r}.") from None


def _foreign_key(model: type[models.Model], name: str) -> Any:
    model_field = _field(model, name)
    if not (model_field.many_to_one or model_field.one_to_one) or not model_field.concrete:
        raise ImproperlyConfigured(
            f"Tracking {model._meta.label}: owner={name!r} must name a foreign key "
            "(or pass a callable returning the owner)."
        )
    return model_field


# --- receivers --------------------------------------------------------------------------------


def _on_save(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    raw: bool = False,
    using: str = "default",
    update_fields: Iterable[str] | None = None,
    **kwargs: Any,
) -> None:
    if raw:
        return
    tracking = registry.get(sender)
    action = "created" if created else "updated"
    if tracking is not None and action in tracking.on:
        _capture(tracking, instance, action, update_fields, using)


def _on_delete(
    sender: type[models.Model], instance: models.Model, using: str = "default", **kwargs: Any
) -> None:
    tracking = registry.get(sender)
    if tracking is not None:
        _capture(tracking, instance, "deleted", None, using)


def _capture(
    tracking: Tracking,
    instance: models.Model,
    action: str,
    update_fields: Iterable[str] | None,
    using: str,
) -> None:
    """Build and write the event row; any error is logged and never reaches the host's save."""
    try:
        now = timezone.now()
        destination = _owner_of(tracking, instance)
        if destination is None:
            return
        fields = frozenset(update_fields) if update_fields else None
        payload = tracking.stored_event(instance, action, now, fields)
        if payload is None:
            return
        owner_type, owner_id, connection_id = _destination(destination, using)
    except Exception:
        logger.exception(
            "Could not build the Datadog event for %s %s; the save went ahead without it.",
            tracking.model._meta.label, action,
        )  # fmt: skip
        return
    db = connections[using]  # once: the INSERT and the kick both go to this wrapper
    written = outbox.append(
        db, kind=OutboxKind.EVENT, payload=payload, owner_content_type_id=owner_type,
        owner_object_id=owner_id, connection_id=connection_id, source=tracking.source,
        action=action, now=now,
    )  # fmt: skip
    if written:
        _kick_on(db)


def _write(*, using: str, **fields: Any) -> int | None:
    """The outbox row, then the coalesced kick; neither may fail the host's save."""
    row_id = outbox.write(using=using, **fields)
    if row_id is not None:
        _kick(using)
    return row_id


def _kick(using: str) -> None:
    _kick_on(connections[using])


def _kick_on(db: Any) -> None:
    try:
        kick.request_kick_on(db)
    except Exception:  # the sweeper delivers anyway; the host's save must go on
        logger.exception("Could not request a delivery kick; the sweeper will deliver.")


def _owner_of(tracking: Tracking, instance: models.Model) -> Any:
    """The owner (a model instance or a Connection), or ``(owner model, pk)`` for a foreign
    key, which avoids fetching the owner on the save path."""
    key = tracking.owner_key
    if key is not None:
        attname, related_model = key
        pk = getattr(instance, attname)
        return None if pk is None else (related_model, pk)
    if isinstance(tracking.owner, str):
        return getattr(instance, tracking.owner)
    return tracking.owner(instance)


def _destination(destination: Any, using: str) -> tuple[int | None, str, int | None]:
    """(owner content type id, owner id, fixed connection id) of an owner or a connection."""
    if isinstance(destination, Connection):
        return destination.owner_content_type_id, destination.owner_object_id, destination.pk
    content_type_id, object_id = owner_reference(destination, using)
    return content_type_id, object_id, None


def _send(
    kind: str, target: models.Model, payload: dict[str, Any], when: datetime
) -> OutboxEvent | None:
    using = target._state.db or router.db_for_write(OutboxEvent)
    owner_type, owner_id, connection_id = _destination(target, using)
    now = timezone.now()
    fields: dict[str, Any] = {
        "kind": kind, "payload": payload, "owner_content_type_id": owner_type,
        "owner_object_id": owner_id, "connection_id": connection_id, "source": "api",
        "action": "",
    }  # fmt: skip
    row_id = _write(**fields, now=now, event_time=when, using=using)
    if row_id is None:
        return None
    row = OutboxEvent(id=row_id, event_time=when, created_at=now, next_attempt_at=now, **fields)
    row._state.adding, row._state.db = False, using
    return row


# --- public API -------------------------------------------------------------------------------


def send_event(
    owner_or_connection: models.Model,
    *,
    title: str,
    text: str,
    tags: Iterable[str] = (),
    alert_type: str = "info",
    aggregation_key: str | None = None,
    priority: str | None = None,
    host: str | None = None,
    when: datetime | None = None,
) -> OutboxEvent | None:
    """Queue an event for every active connection of an owner (or for one connection).

    Sent after the current transaction commits; returns the outbox row (``None`` only if
    writing it failed, which is logged).
    """
    when = when or timezone.now()
    payload = payloads.event(
        title=title, text=text, tags=tags, date_happened=when, alert_type=alert_type,
        aggregation_key=aggregation_key, priority=priority, host=host,
        source_type_name=app_settings.SOURCE_TYPE_NAME,
    )  # fmt: skip
    return _send(OutboxKind.EVENT, owner_or_connection, payload, when)


def send_metric(
    owner_or_connection: models.Model,
    name: str,
    value: float,
    *,
    metric_type: str = "gauge",
    tags: Iterable[str] = (),
    unit: str | None = None,
    interval: int | None = None,
    host: str | None = None,
    when: datetime | None = None,
) -> OutboxEvent | None:
    """Queue one metric point (``metric_type``: gauge, count, rate or unspecified)."""
    when = when or timezone.now()
    if when > timezone.now() + METRIC_MAX_FUTURE:
        raise ValueError("Datadog refuses metric points more than 10 minutes in the future.")
    payload = payloads.metric_series(
        name, value, timestamp=when, metric_type=metric_type, tags=tags, unit=unit,
        interval=interval, host=host,
    )  # fmt: skip
    return _send(OutboxKind.METRIC, owner_or_connection, payload, when)


def send_log(
    owner_or_connection: models.Model,
    message: str,
    *,
    status: str = "info",
    tags: Iterable[str] = (),
    attributes: Mapping[str, Any] | None = None,
    service: str | None = None,
    hostname: str | None = None,
    when: datetime | None = None,
) -> OutboxEvent | None:
    """Queue one log entry; ``ddsource`` is ``LOG_SOURCE``, ``service`` defaults to
    ``LOG_SERVICE``; ``attributes`` become top-level JSON attributes."""
    when = when or timezone.now()
    payload = payloads.log_entry(
        message, timestamp=when, source=app_settings.LOG_SOURCE,
        service=service or app_settings.LOG_SERVICE, status=status, tags=tags,
        attributes=attributes, hostname=hostname,
    )  # fmt: skip
    return _send(OutboxKind.LOG, owner_or_connection, payload, when)


def send_service_check(
    owner_or_connection: models.Model,
    *,
    check: str,
    status: int | str,
    message: str | None = None,
    tags: Iterable[str] = (),
    host_name: str = "",
    when: datetime | None = None,
) -> OutboxEvent | None:
    """Queue one service check run (``status``: 0-3 or ok, warning, critical, unknown);
    ``message`` is cut to Datadog's 500 characters."""
    when = when or timezone.now()
    if when > timezone.now() + METRIC_MAX_FUTURE:
        raise ValueError("A service check more than 10 minutes in the future is refused.")
    payload = payloads.service_check(
        check, status, timestamp=when, host_name=host_name, message=message, tags=tags
    )
    return _send(OutboxKind.CHECK, owner_or_connection, payload, when)
