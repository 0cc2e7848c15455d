"""Connections in the admin: a read-only record plus lifecycle actions with confirmation pages.

Secrets are never shown, edited or decrypted here: list views defer the encrypted columns,
and pages show only the API key's last four characters and whether tokens are stored.
Nothing is saved through a form (a stale form could overwrite a token refreshed
meanwhile); every change goes through an operation of ``connections``.

Longer than 300 lines for one concern, the connection's admin: its columns, the
permissions, and the confirmed lifecycle actions (the confirmation view, its URL and its
links) are one ``ModelAdmin``; what the admin pages share is in ``display``, the
operations in ``connections``.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from .. import permissions
from ..conf import app_settings
from ..connections.batch import each_connection
from ..models import Alarm, Connection
from ..templatetags.datadog_partner import status_badge
from .display import NamedListAdmin, labelled, when
from .filters import LastErrorFilter, OwnerTypeFilter, RegionFilter
from .lifecycle_actions import ACTIONS, LifecycleAction

SECRET_FIELDS = ("access_token", "refresh_token", "api_key")
CONFIRM_URL_NAME = "datadog_partner_connection_confirm"
ID = re.compile(r"[0-9]{1,18}")


@admin.register(Connection)
class ConnectionAdmin(NamedListAdmin):
    # Few, compact columns, so the list fits a 1280 px window beside both sidebars: the
    # last success, error and health check share one column (the token's expiry is on
    # the connection's page; tokens are refreshed when needed).
    list_display = ("id", "connection_label", "status_badge", "api_key_display", "activity")
    list_display_links = ("id", "connection_label")
    list_filter = ("status", RegionFilter, OwnerTypeFilter, LastErrorFilter)
    list_select_related = ("owner_content_type",)
    date_hierarchy = "created_at"
    actions = ("revoke_action", "refresh_action", "check_action", "test_event_action",
               "reconnect_link_action", "create_api_key_action")  # fmt: skip
    fieldsets = (
        ("Datadog", {"fields": ("region_display", "site", "dd_org_id", "dd_org_name",
                                "scopes_display")}),
        ("Owner", {"fields": ("owner_display", "connected_by")}),
        ("Status", {"fields": ("status_badge", "status_reason", "status_changed_at",
                               "paused_until")}),
        ("Credentials (encrypted; never shown)", {"fields": ("credentials",)}),
        ("Activity", {"fields": ("created_at", "updated_at", "last_success_at", "last_error",
                                 "health_checked_at", "refresh_answer_lost_at")}),
    )  # fmt: skip
    readonly_fields = ("region_display", "scopes_display", "owner_display", "status_badge",
                       "credentials", "last_error")  # fmt: skip
    change_form_template = "admin/datadog_partner/connection/change_form.html"
    change_list_template = "admin/datadog_partner/connection/change_list.html"

    # --- what is shown -------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        return super().get_queryset(request).defer(*SECRET_FIELDS).prefetch_related("owner")

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        username = get_user_model().USERNAME_FIELD
        return ["dd_org_name", "dd_org_id", "owner_object_id", "api_key_last4", "api_key_id",
                f"connected_by__{username}"]  # fmt: skip

    @admin.display(description="Connection", ordering="dd_org_name")
    def connection_label(self, obj: Connection) -> str:
        return obj.label

    @admin.display(description="Datadog region")
    def region_display(self, obj: Connection) -> str:
        return f"{obj.region_name} ({obj.domain})"

    @admin.display(description="Granted scopes")
    def scopes_display(self, obj: Connection) -> str:
        return ", ".join(obj.scopes or []) or "—"

    @admin.display(description="Owner")
    def owner_display(self, obj: Connection) -> str:
        return obj.owner_name

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Connection) -> SafeString:
        return status_badge(obj.status)

    @admin.display(description="API key", ordering="api_key_last4")
    def api_key_display(self, obj: Connection) -> str:
        return f"…{obj.api_key_last4}" if obj.api_key_last4 else "—"

    @admin.display(description="Last error", ordering="last_error_at")
    def last_error(self, obj: Connection) -> str:
        """The last failure until the connection recovers (``status.set_status`` clears it)."""
        if not obj.last_error_code:
            return "—"
        if obj.last_error_at is None:
            return obj.last_error_code
        return format_html("{}, {}", obj.last_error_code, when(obj.last_error_at))

    @admin.display(description="Activity", ordering="last_success_at")
    def activity(self, obj: Connection) -> SafeString:
        lines = [("Success", when(obj.last_success_at))]
        if obj.last_error_code:
            lines.append(("Error", self.last_error(obj)))
        lines.append(("Checked", when(obj.health_checked_at)))
        return labelled(lines)

    @admin.display(description="Stored credentials")
    def credentials(self, obj: Connection) -> str:
        # Presence only: asking whether a value is stored needs no decryption.
        expiry = f", expires {obj.expires_at:%Y-%m-%d %H:%M %Z}" if obj.expires_at else ""
        lines = [
            ("Access token", "stored" + expiry if obj.access_token is not None else "none"),
            ("Refresh token", "stored" if obj.refresh_token is not None else "none"),
            ("API key", _api_key_summary(obj)),
        ]
        return format_html_join(mark_safe("<br>"), "{}: {}", lines)

    # --- nothing is edited through a form -------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The object page is read-only; actions need ``manage_connection`` instead.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only revoked connections may go: deleting a live one would leave its grant alive.
        revoked = obj is not None and obj.status == "revoked"
        return revoked and super().has_delete_permission(request, obj)

    def has_manage_permission(self, request: HttpRequest) -> bool:
        """Offer the actions that change connections; each connection is then still
        checked with ``permissions.may``, so a host's narrower rule applies here too."""
        return permissions.holds_manage_permission(request.user)

    def refusal(
        self, request: HttpRequest, spec: LifecycleAction, connection: Connection
    ) -> str | None:
        """Why ``spec`` may not be done to ``connection`` by this user, or ``None``."""
        if spec.perform is not None and not permissions.may(
            request.user, permissions.MANAGE, connection
        ):
            return "you may not manage it"
        return spec.not_applicable(connection)

    def may_offer(self, request: HttpRequest, spec: LifecycleAction) -> bool:
        return bool(getattr(self, f"has_{spec.permission}_permission")(request))

    # --- pages ----------------------------------------------------------------------------

    def list_context(self, request: HttpRequest) -> dict[str, Any]:
        return {
            "open_alarms": Alarm.objects.filter(cleared_at__isnull=True),
            "may_see_dashboard": self.has_view_permission(request),
        }

    def object_context(self, request: HttpRequest, object_id: str) -> dict[str, Any]:
        """The lifecycle buttons this user may use on this connection."""
        connection = self.get_object(request, object_id)  # None for an unknown or bad id
        if connection is None:
            return {"lifecycle_buttons": []}
        buttons = [
            {
                "label": action.label,
                "url": _confirm_url(action.name, [connection.pk]),
                "destructive": action.destructive,
                "copies": _copyable_link(connection) if action.name == "reconnect_link" else "",
            }
            for action in ACTIONS.values()
            if self.may_offer(request, action) and self.refusal(request, action, connection) is None
        ]
        return {"lifecycle_buttons": buttons}

    def get_urls(self) -> list[URLPattern]:
        confirm = path(
            "confirm/<str:action>/",
            self.admin_site.admin_view(self.confirm_view),
            name=CONFIRM_URL_NAME,
        )
        return [confirm, *super().get_urls()]

    def confirm_view(self, request: HttpRequest, action: str) -> HttpResponse:
        """GET: what will happen to which connections. POST: do it, report, go back."""
        spec = ACTIONS.get(action)
        if spec is None:
            raise Http404("Unknown action.")
        if not self.may_offer(request, spec):
            raise PermissionDenied
        connections = _selected(request)
        if not connections:
            self.message_user(request, "No connection selected.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:datadog_partner_connection_changelist"))
        refusals = {c.pk: self.refusal(request, spec, c) for c in connections}
        applicable = [c for c in connections if refusals[c.pk] is None]
        if request.method == "POST" and spec.perform is not None and applicable:
            self._perform(request, spec, applicable)
            return HttpResponseRedirect(_back_url(connections))
        skipped = [(c, refusals[c.pk]) for c in connections if c not in applicable]
        return self._confirmation_page(request, spec, connections, applicable, skipped)

    def _confirmation_page(
        self,
        request: HttpRequest,
        spec: LifecycleAction,
        connections: list[Connection],
        applicable: list[Connection],
        skipped: list[tuple[Connection, str | None]],
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": spec.label if spec.perform is None else f"{spec.label}: are you sure?",
            "action": spec,
            "confirmable": spec.perform is not None,
            "applicable": applicable,
            "skipped": skipped,
            "links": _reconnect_links(request, applicable) if spec.perform is None else [],
            "ids": ",".join(str(c.pk) for c in applicable),
            "back_url": _back_url(connections),
        }
        return TemplateResponse(
            request, "admin/datadog_partner/connection/confirm_action.html", context
        )

    def _perform(
        self, request: HttpRequest, spec: LifecycleAction, targets: list[Connection]
    ) -> None:
        perform = spec.perform
        assert perform is not None
        for step in each_connection(targets, lambda connection: perform(request, connection)):
            label = step.connection.label
            if step.result is None:
                self.message_user(request, f"{label}: {step.error}", messages.ERROR)
                continue
            level, text = step.result
            self.message_user(request, f"{label}: {spec.label}: {text}", level)
            # The connection's History names who did what (the customer's page does not).
            self.log_change(request, step.connection, f"{spec.label}: {text}")

    # --- changelist actions: each leads to the confirmation page ------------------------------

    def _to_confirmation(self, queryset: QuerySet[Connection], action: str) -> HttpResponse:
        pks = queryset.order_by("pk").values_list("pk", flat=True)
        return HttpResponseRedirect(_confirm_url(action, pks))

    @admin.action(description="Revoke", permissions=["manage"])
    def revoke_action(self, request: HttpRequest, queryset: QuerySet[Connection]) -> HttpResponse:
        return self._to_confirmation(queryset, "revoke")

    @admin.action(description="Refresh now", permissions=["manage"])
    def refresh_action(self, request: HttpRequest, queryset: QuerySet[Connection]) -> HttpResponse:
        return self._to_confirmation(queryset, "refresh")

    @admin.action(description="Check health", permissions=["manage"])
    def check_action(self, request: HttpRequest, queryset: QuerySet[Connection]) -> HttpResponse:
        return self._to_confirmation(queryset, "check")

    @admin.action(description="Send test event", permissions=["manage"])
    def test_event_action(
        self, request: HttpRequest, queryset: QuerySet[Connection]
    ) -> HttpResponse:
        return self._to_confirmation(queryset, "test_event")

    @admin.action(description="Copy reconnect link", permissions=["view"])
    def reconnect_link_action(
        self, request: HttpRequest, queryset: QuerySet[Connection]
    ) -> HttpResponse:
        return self._to_confirmation(queryset, "reconnect_link")

    @admin.action(description="Create the API key again", permissions=["manage"])
    def create_api_key_action(
        self, request: HttpRequest, queryset: QuerySet[Connection]
    ) -> HttpResponse:
        return self._to_confirmation(queryset, "create_api_key")


def _api_key_summary(obj: Connection) -> str:
    if obj.api_key is None:
        return "none" + (f" (was …{obj.api_key_last4})" if obj.api_key_last4 else "")
    parts = [f"…{obj.api_key_last4}" if obj.api_key_last4 else "stored"]
    if obj.api_key_id:
        parts.append(f"id {obj.api_key_id}")
    if obj.api_key_fingerprint:
        parts.append(f"fingerprint {obj.api_key_fingerprint[:12]}")
    return ", ".join(parts)


def _selected(request: HttpRequest) -> list[Connection]:
    """The connections named by the confirmation page's ``ids`` (GET or POST)."""
    ids = _ids(request.POST.get("ids") if request.method == "POST" else request.GET.get("ids"))
    return list(Connection.objects.defer(*SECRET_FIELDS).filter(pk__in=ids).order_by("pk"))


def _confirm_url(action: str, ids: Any) -> str:
    joined = ",".join(str(pk) for pk in ids)
    return reverse(f"admin:{CONFIRM_URL_NAME}", args=[action]) + f"?ids={joined}"


def _ids(raw: str | None) -> list[int]:
    """Primary keys from ``1,2,3``; anything else (``²`` passes ``isdigit``, numbers past a
    64-bit key) names no connection."""
    parts = (part.strip() for part in (raw or "").split(",")[:500])
    return [int(part) for part in parts if ID.fullmatch(part)]


def _back_url(connections: list[Connection]) -> str:
    if len(connections) == 1:
        return reverse("admin:datadog_partner_connection_change", args=[connections[0].pk])
    return reverse("admin:datadog_partner_connection_changelist")


def reconnect_link(connection: Connection) -> str:
    """The absolute URL of the connection's own page, built from BASE_URL (never the Host)."""
    return app_settings.BASE_URL + reverse("datadog_partner:connection", args=[connection.pk])


def _copyable_link(connection: Connection) -> str:
    """The link a button copies in one click, or "" (the button then opens the page)."""
    try:
        return reconnect_link(connection)
    except (ImproperlyConfigured, NoReverseMatch):
        return ""


def _reconnect_links(
    request: HttpRequest, connections: list[Connection]
) -> list[tuple[Connection, str]]:
    try:
        return [(c, reconnect_link(c)) for c in connections]
    except (ImproperlyConfigured, NoReverseMatch) as exc:
        messages.error(request, f"Cannot build reconnect links: {exc}")
        return []
