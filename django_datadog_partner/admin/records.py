"""Read-only records: pending OAuth authorizations, configuration alarms, site breakers."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..delivery import breaker
from ..models import Alarm, AuthorizationRequest, SiteBreaker
from ..regions import region_name
from .display import NamedListAdmin, labelled, when
from .filters import OpenFilter, RegionFilter


class ReadOnlyAdmin(NamedListAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AlarmStateFilter(OpenFilter):
    field = "cleared_at"
    closed_label = "Cleared"


class BreakerStateFilter(OpenFilter):
    field = "open_until"
    open_when_empty = False


@admin.register(AuthorizationRequest)
class AuthorizationRequestAdmin(ReadOnlyAdmin):
    """Who started connecting what, and whether it finished. The state value, the PKCE
    verifier and the browser binding are secrets and are never listed."""

    # Compact, to fit 1280 px: the site's URL is on the request's page.
    list_display = ("id", "user", "region", "started", "outcome", "reconnects")
    list_filter = (RegionFilter,)
    list_select_related = ("user", "reconnect_of")
    date_hierarchy = "created_at"
    fields = ("user", "owner_content_type", "owner_object_id", "domain", "site", "reconnect_of",
              "created_at", "expires_at", "used_at")  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuthorizationRequest]:
        return super().get_queryset(request).defer("code_verifier", "state", "binding_hash")

    @admin.display(description="Region", ordering="domain")
    def region(self, obj: AuthorizationRequest) -> str:
        return region_name(obj.domain)

    @admin.display(description="Started", ordering="created_at")
    def started(self, obj: AuthorizationRequest) -> str:
        return when(obj.created_at)

    @admin.display(description="Outcome", ordering="used_at")
    def outcome(self, obj: AuthorizationRequest) -> SafeString:
        """Used, expired unused, or still waiting for Datadog's answer."""
        if obj.used_at is not None:
            return format_html("Used {}", when(obj.used_at))
        if obj.expires_at <= timezone.now():
            return format_html("Expired unused {}", when(obj.expires_at))
        return format_html("Waiting, expires {}", when(obj.expires_at))

    @admin.display(description="Reconnects", ordering="reconnect_of")
    def reconnects(self, obj: AuthorizationRequest) -> str:
        # A method, not the foreign key: the admin keeps a key's cell on one line.
        return "-" if obj.reconnect_of is None else obj.reconnect_of.label


@admin.register(Alarm)
class AlarmAdmin(ReadOnlyAdmin):
    """Configuration problems only the vendor can fix (shown as a banner on connections)."""

    list_display = ("code", "message", "count", "raised", "cleared")
    list_filter = (AlarmStateFilter,)
    actions = ("clear",)

    @admin.display(description="Raised", ordering="last_raised_at")
    def raised(self, obj: Alarm) -> SafeString:
        return labelled([("First", when(obj.first_raised_at)), ("Last", when(obj.last_raised_at))])

    @admin.display(description="Cleared", ordering="cleared_at")
    def cleared(self, obj: Alarm) -> str:
        return "Open" if obj.cleared_at is None else when(obj.cleared_at)

    def has_clear_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("datadog_partner.change_alarm")

    @admin.action(description="Clear (the problem is fixed)", permissions=["clear"])
    def clear(self, request: HttpRequest, queryset: QuerySet[Alarm]) -> None:
        cleared = queryset.filter(cleared_at__isnull=True).update(cleared_at=timezone.now())
        self.message_user(
            request,
            f"{cleared} alarm(s) cleared. They come back if the problem happens again.",
            messages.SUCCESS,
        )


@admin.register(SiteBreaker)
class SiteBreakerAdmin(ReadOnlyAdmin):
    """Datadog sites that kept failing. An open breaker closes by itself after a successful
    probe; closing it here sends the waiting rows at once."""

    list_display = ("region", "state", "failures", "opened", "last_error")
    list_filter = (BreakerStateFilter,)
    actions = ("close",)

    @admin.display(description="Datadog site", ordering="domain")
    def region(self, obj: SiteBreaker) -> str:
        return f"{region_name(obj.domain)} ({obj.domain})"

    @admin.display(description="State", ordering="open_until")
    def state(self, obj: SiteBreaker) -> str | SafeString:
        if obj.open_until is None:
            return "Closed"
        return format_html("Open until {}", when(obj.open_until))

    @admin.display(description="Opened", ordering="opened_at")
    def opened(self, obj: SiteBreaker) -> str:
        return when(obj.opened_at)

    def has_close_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("datadog_partner.change_sitebreaker")

    @admin.action(description="Close (send to the site again now)", permissions=["close"])
    def close(self, request: HttpRequest, queryset: QuerySet[SiteBreaker]) -> None:
        closed = sum(breaker.close(domain) for domain in queryset.values_list("domain", flat=True))
        self.message_user(request, f"{closed} breaker(s) closed.", messages.SUCCESS)
