"""What the package's admin pages share: list titles that read naturally and compact
times (the list filters are in ``filters``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst


class NamedListAdmin(admin.ModelAdmin):
    """A list titled with what it lists ("Outbox items"), not "Select outbox item to
    change" on a page where nothing is changed; an object page titled with its model.
    Subclasses add to either page's context with ``list_context``/``object_context``."""

    class Media:
        # The compact columns' styles (muted labels, one-line times) and the badges.
        css = {"all": ("datadog_partner/badges.css", "datadog_partner/admin.css")}

    def list_context(self, request: HttpRequest) -> dict[str, Any]:
        return {}

    def object_context(self, request: HttpRequest, object_id: str) -> dict[str, Any]:
        return {}

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        title = capfirst(str(self.model._meta.verbose_name_plural))
        context = {"title": title, **self.list_context(request), **(extra_context or {})}
        return super().changelist_view(request, context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        title = capfirst(str(self.model._meta.verbose_name))
        context = {"title": title, **self.object_context(request, object_id)}
        return super().change_view(
            request, object_id, form_url, {**context, **(extra_context or {})}
        )


def when(value: datetime | None, now: datetime | None = None) -> str | SafeString:
    """``3 h ago`` / ``in 50 min``, the full time in its tooltip; "—" for none."""
    if value is None:
        return "—"
    now = now or timezone.now()
    full = formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), full, span(value, now)
    )


def labelled(lines: list[tuple[Any, Any]]) -> SafeString:
    """Short "Label: value" lines in one cell, the labels muted."""
    return format_html_join(mark_safe("<br>"), '<span class="ddp-muted">{}:</span> {}', lines)


def span(value: datetime, now: datetime) -> str:
    """How long ago (or ahead) ``value`` is, in the largest unit that fits a list column."""
    seconds = (now - value).total_seconds()
    size = abs(seconds)
    if size < 60:
        return "just now"
    if size < 3600:
        amount = f"{size // 60:.0f} min"
    elif size < 2 * 86400:
        amount = f"{size // 3600:.0f} h"
    else:
        amount = f"{size // 86400:.0f} days"
    return f"{amount} ago" if seconds > 0 else f"in {amount}"
