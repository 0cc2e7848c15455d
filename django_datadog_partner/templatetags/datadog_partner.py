"""``{% load datadog_partner %}``: the status badge, the same in the admin and on the pages.

A badge is the status's name in words on a tinted background (``static/datadog_partner/
badges.css``), so it reads without colour too; the tone groups statuses by what they ask
of people: nothing, the customer's action, the vendor's, or nothing any more.
"""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import Connection, ConnectionStatus

register = template.Library()

TONES = {
    ConnectionStatus.ACTIVE: "ok",
    ConnectionStatus.KEY_MISSING: "warning",
    ConnectionStatus.NEEDS_RECONNECT: "warning",
    ConnectionStatus.API_KEY_REJECTED: "warning",
    ConnectionStatus.CREDENTIALS_UNREADABLE: "error",
    ConnectionStatus.REVOKING: "ended",
    ConnectionStatus.REVOKED: "ended",
}


def status_badge(status: str) -> SafeString:
    """The badge of ``status`` (a ``ConnectionStatus`` value)."""
    known = status in ConnectionStatus.values
    label = ConnectionStatus(status).label if known else status
    tone = TONES[ConnectionStatus(status)] if known else "ended"
    return format_html(
        '<span class="ddp-badge ddp-badge--{}" data-status="{}">{}</span>', tone, status, label
    )


@register.simple_tag
def connection_badge(connection: Connection) -> SafeString:
    return status_badge(connection.status)
