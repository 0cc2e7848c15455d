"""List filters that offer only what exists, named as people read it: regions by name,
owner types by their model's name, errors that happened, and open/closed states."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import capfirst

from ..regions import region_name


class OpenFilter(admin.SimpleListFilter):
    """A "By state" filter (open, closed) over a nullable time field, not "By cleared"."""

    title = "state"
    parameter_name = "state"
    #: The time field, and whether an empty value means open (an alarm not cleared yet).
    field = ""
    open_when_empty = True
    closed_label = "Closed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open"), ("closed", self.closed_label)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() not in ("open", "closed"):
            return queryset
        empty = (self.value() == "open") == self.open_when_empty
        return queryset.filter(**{f"{self.field}__isnull": empty})


class RegionFilter(admin.SimpleListFilter):
    """The regions the listed model has rows for, by their display name ("US1", "EU1")."""

    title = "Datadog region"
    parameter_name = "region"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows = model_admin.model._default_manager.order_by("domain")
        domains = rows.values_list("domain", flat=True).distinct()
        return [(domain, region_name(domain)) for domain in domains]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(domain=self.value()) if self.value() else queryset


class OwnerTypeFilter(admin.SimpleListFilter):
    """The owner types that have rows, by their model's name ("Organisation"), not the
    content type's "Shop | organisation"."""

    title = "owner type"
    parameter_name = "owner_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows = model_admin.model._default_manager.order_by()
        ids = rows.values_list("owner_content_type", flat=True).distinct()
        types = ContentType.objects.filter(pk__in=ids).order_by("model")
        return [(str(ct.pk), _type_name(ct)) for ct in types]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(owner_content_type_id=value)


def _type_name(content_type: ContentType) -> str:
    model = content_type.model_class()
    if model is None:  # its app is gone
        return str(content_type)
    return str(capfirst(model._meta.verbose_name))


class LastErrorFilter(admin.SimpleListFilter):
    """The error codes rows hold now (a recovered connection holds none), no empty entry."""

    title = "last error"
    parameter_name = "last_error"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows = model_admin.model._default_manager.exclude(last_error_code="")
        codes = rows.order_by("last_error_code").values_list("last_error_code", flat=True)
        return [(code, code) for code in codes.distinct()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(last_error_code=value) if value else queryset
