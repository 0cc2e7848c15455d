"""The outbox in the admin: read-only, filterable, with "Requeue" for dead or parked rows.

Requeue needs the change permission on outbox events, not ``manage_connection``: it sends
rows again to the connection each row was bound to when it was written, so it can neither
pick a destination nor change a connection; it is delivery operations' tool.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import outbox
from ..delivery import kick
from ..models import OutboxEvent
from .display import NamedListAdmin, labelled, when

OWNER_CHOICES_LIMIT = 50


class OwnerFilter(admin.SimpleListFilter):
    """Rows of one owner (``?owner=<content type id>:<object id>``), recent owners listed
    by name."""

    title = _("owner")
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        pairs = (
            OutboxEvent.objects.exclude(owner_content_type=None)
            .order_by("-id")
            .values_list("owner_content_type_id", "owner_object_id")
            .distinct()[:OWNER_CHOICES_LIMIT]
        )
        unique = list(dict.fromkeys(pairs))
        names = owner_names(unique)
        return [(f"{ct}:{pk}", names[ct, pk]) for ct, pk in unique]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value or ":" not in value:
            return queryset
        content_type, object_id = value.split(":", 1)
        if not content_type.isdigit():
            return queryset.none()
        return queryset.filter(owner_content_type_id=content_type, owner_object_id=object_id)


def owner_names(references: list[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """Each owner's name (``str(owner)``), one query per owner model; a deleted owner is
    named by its type and id."""
    types = ContentType.objects.in_bulk({ct for ct, _ in references})
    names = {(ct, pk): f"{types[ct].name} {pk} (deleted)" for ct, pk in references}
    for ct, content_type in types.items():
        model = content_type.model_class()
        if model is None:
            continue
        wanted = [pk for type_id, pk in references if type_id == ct]
        try:
            found = model._base_manager.in_bulk(wanted)
        except (ValueError, ValidationError):  # keys that do not fit the model's
            continue
        for key, owner in found.items():
            names[ct, str(key)] = str(owner)
    return names


@admin.register(OutboxEvent)
class OutboxEventAdmin(NamedListAdmin):
    # Compact columns, so the list fits a 1280 px window beside both sidebars: what the
    # row is, its outcome with the reason, and one time (the next attempt or the finish);
    # the connection column names the Datadog side, the owner having its own column.
    list_display = ("id", "item_display", "status_display", "owner_display",
                    "connection_display", "timing")  # fmt: skip
    list_filter = ("status", "kind", "source", OwnerFilter, "connection")
    search_fields = ("=id", "=owner_object_id", "last_error_code")
    list_select_related = ("connection", "owner_content_type")
    date_hierarchy = "created_at"
    actions = ["requeue"]
    fields = ("kind", "status", "source", "action", "owner_display", "connection", "attempts",
              "event_time", "created_at", "next_attempt_at", "lease_until", "finished_at",
              "last_error_code", "last_error", "payload_display")  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxEvent]:
        # Owners by name, in one query per owner model.
        return super().get_queryset(request).prefetch_related("owner")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Requeue needs "change" on the outbox; a row itself is never edited.
        return obj is None and super().has_change_permission(request)

    @admin.display(description=_("owner"))
    def owner_display(self, obj: OutboxEvent) -> str:
        if obj.owner_content_type is None:
            return "-"
        owner = obj.owner
        if owner is None:
            return f"{obj.owner_content_type.name} {obj.owner_object_id} (deleted)"
        return str(owner)

    @admin.display(description=_("item"), ordering="kind")
    def item_display(self, obj: OutboxEvent) -> SafeString:
        """ "Event" over "shop.order updated": the kind, then what wrote it."""
        origin = " ".join(part for part in (obj.source, obj.action) if part)
        if not origin:
            return format_html("{}", obj.get_kind_display())
        return format_html(
            '{}<br><span class="ddp-muted">{}</span>', obj.get_kind_display(), origin
        )

    @admin.display(description=_("status"), ordering="status")
    def status_display(self, obj: OutboxEvent) -> SafeString:
        """The status, then the reason when it says more than the status does, and the
        attempts made."""
        details = [obj.last_error_code] if obj.last_error_code not in ("", obj.status) else []
        if obj.attempts:
            details.append(ngettext("%(n)d attempt", "%(n)d attempts", obj.attempts)
                           % {"n": obj.attempts})  # fmt: skip
        if not details:
            return format_html("{}", obj.get_status_display())
        return format_html(
            '{}<br><span class="ddp-muted">{}</span>', obj.get_status_display(), ", ".join(details)
        )

    @admin.display(description=_("connection"), ordering="connection")
    def connection_display(self, obj: OutboxEvent) -> str:
        connection = obj.connection
        return "-" if connection is None else connection.datadog_label

    @admin.display(description=_("when"), ordering="next_attempt_at")
    def timing(self, obj: OutboxEvent) -> SafeString:
        if obj.finished_at is not None:
            lines = [(_("Finished"), when(obj.finished_at))]
        else:
            lines = [(_("Due"), when(obj.next_attempt_at))]
        return labelled(lines)

    @admin.display(description=_("payload"))
    def payload_display(self, obj: OutboxEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.action(
        description=_("Requeue selected dead, parked or expired rows"), permissions=["change"]
    )
    def requeue(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        selected = queryset.count()
        done = outbox.requeue(queryset)
        if done:
            kick.request_kick()
        self.message_user(
            request,
            ngettext("%(n)d row requeued.", "%(n)d rows requeued.", done) % {"n": done},
            messages.SUCCESS if done else messages.WARNING,
        )
        if selected > done:
            self.message_user(
                request,
                _(
                    "%(n)d selected rows were left alone: only dead, parked or expired rows "
                    "can be requeued."
                )
                % {"n": selected - done},
                messages.WARNING,
            )
