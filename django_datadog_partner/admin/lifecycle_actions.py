"""The lifecycle actions offered on connections in the admin, each behind a confirmation page.

Every action calls an operation from ``connections``; this module only says who it applies
to, which permission it needs, and turns the outcome into a message for the person who
clicked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import messages
from django.http import HttpRequest

from ..connections import check_health, refresh, revoke
from ..models import Connection, ConnectionStatus

#: ``(messages level, text)`` reported for one connection.
Outcome = tuple[int, str]

#: The status reason of a revoke from the admin, which the customer reads on their page.
ADMIN_REVOKE_REASON = "Disconnected by our support team."
TEST_EVENT_TITLE = "Test event from the Datadog integration"
TEST_EVENT_TEXT = "Sent from the admin. If you can read this in Datadog, the integration works."


@dataclass(frozen=True)
class LifecycleAction:
    name: str
    label: str
    explanation: str
    #: Why the action does not apply to a connection, or ``None`` when it does.
    not_applicable: Callable[[Connection], str | None]
    #: ``None`` for an action whose page is the result (nothing is changed).
    perform: Callable[[HttpRequest, Connection], Outcome] | None
    #: Ends something for good (styled as such, so it is not clicked by mistake).
    destructive: bool = False

    @property
    def permission(self) -> str:
        """The admin permission it needs: seeing a result, or managing the connections."""
        return "view" if self.perform is None else "manage"

    @property
    def confirm_label(self) -> str:
        return f"Yes, {self.label[0].lower()}{self.label[1:]}"


def _revoke(request: HttpRequest, connection: Connection) -> Outcome:
    outcome = revoke(connection, reason=ADMIN_REVOKE_REASON, actor=request.user)
    return (messages.SUCCESS if outcome.done else messages.WARNING), outcome.message


def _refresh(request: HttpRequest, connection: Connection) -> Outcome:
    refresh(connection, force=True)
    until = f"{connection.expires_at:%Y-%m-%d %H:%M %Z}" if connection.expires_at else "unknown"
    return messages.SUCCESS, f"Token refreshed; the new access token is valid until {until}."


def _check(request: HttpRequest, connection: Connection) -> Outcome:
    report = check_health(connection)
    return (messages.SUCCESS if report.healthy else messages.WARNING), report.message


def _send_test_event(request: HttpRequest, connection: Connection) -> Outcome:
    from ..tracking import send_event

    row = send_event(connection, title=TEST_EVENT_TITLE, text=TEST_EVENT_TEXT)
    if row is None:
        return messages.ERROR, "The test event could not be queued (see the logs)."
    return (
        messages.SUCCESS,
        f"Test event queued (outbox #{row.pk}); a worker delivers it within seconds.",
    )


def _create_api_key(request: HttpRequest, connection: Connection) -> Outcome:
    from ..connections import create_api_key
    from ..connections.api_keys import key_recovery

    outcome = create_api_key(connection)
    if outcome.missing:
        return messages.WARNING, " ".join(filter(None, (connection.status_reason,
                                                         key_recovery(connection))))  # fmt: skip
    return messages.SUCCESS, f"API key {outcome.result}; the connection is active."


def _unless_revoked(connection: Connection) -> str | None:
    return "already revoked" if connection.status == ConnectionStatus.REVOKED else None


def _unless_no_tokens(connection: Connection) -> str | None:
    if connection.holds_tokens:
        return None
    return f"{connection.get_status_display().lower()}: its tokens are not in use"


def _unless_revoking(connection: Connection) -> str | None:
    if connection.has_ended:
        return f"{connection.get_status_display().lower()}"
    return None


def _only_active(connection: Connection) -> str | None:
    if connection.status == ConnectionStatus.ACTIVE:
        return None
    return f"{connection.get_status_display().lower()}: nothing would be delivered"


def _only_key_missing(connection: Connection) -> str | None:
    if connection.status == ConnectionStatus.KEY_MISSING:
        return None
    return "it has an API key (the action is for connections whose key is missing)"


def _any(connection: Connection) -> str | None:
    return None


ACTIONS: dict[str, LifecycleAction] = {
    action.name: action
    for action in (
        LifecycleAction(
            "revoke",
            "Revoke",
            "Revokes the tokens at Datadog, deletes the stored credentials and cancels pending "
            "events. If Datadog cannot be reached the connection stays “Revoking” and is "
            "retried in the background. The customer must still revoke the “OAuth Client API "
            "Key” in Datadog; the result message says how.",
            _unless_revoked,
            _revoke,
            destructive=True,
        ),
        LifecycleAction(
            "refresh",
            "Refresh now",
            "Asks Datadog for a new access token now (tokens are otherwise refreshed when needed).",
            _unless_no_tokens,
            _refresh,
        ),
        LifecycleAction(
            "check",
            "Check health",
            "Refreshes the token and asks Datadog whether it accepts the API key, as the "
            "daily health check does. Definitive problems change the connection's status.",
            _unless_revoking,
            _check,
        ),
        LifecycleAction(
            "test_event",
            "Send test event",
            "Queues an event for the customer's Datadog event stream; a worker delivers it.",
            _only_active,
            _send_test_event,
        ),
        LifecycleAction(
            "reconnect_link",
            "Copy reconnect link",
            "Send this link to a member of the connection's owner (only they may "
            "reconnect it: their Datadog login decides the organisation). It opens the "
            "connection's page (signing in is required) where “Reconnect” starts a new "
            "authorisation with Datadog and updates this connection in place. The link "
            "contains no credentials.",
            _any,
            None,
        ),
        LifecycleAction(
            "create_api_key",
            "Create the API key again",
            "Asks Datadog for the organisation's API key again. First the customer must "
            "revoke the key named “OAuth Client API Key” on Datadog's API Keys page.",
            _only_key_missing,
            _create_api_key,
        ),
    )
}
