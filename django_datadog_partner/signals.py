"""Public signals. Receivers get the keyword arguments listed with each signal."""

from django.dispatch import Signal

#: A connection was created or reconnected. kwargs: ``connection``, ``created`` (bool).
connection_established = Signal()

#: The connect flow failed. kwargs: ``reason`` (a short code such as ``"access_denied"``),
#: ``user`` (may be anonymous or ``None``).
connection_failed = Signal()

#: A connection changed status. kwargs: ``connection``, ``old``, ``new``, ``reason``.
connection_status_changed = Signal()

#: Our own configuration is wrong (e.g. Datadog answered ``invalid_client``).
#: kwargs: ``code``, ``message``.
configuration_alarm = Signal()

#: Sent once before an outbox item's first delivery attempt. kwargs: ``outbox``,
#: ``payload`` (a dict the receiver may modify in place; the result is stored so every
#: retry sends identical bytes).
pre_event_send = Signal()

#: An outbox item was accepted by Datadog. kwargs: ``outbox``, ``connection``.
event_sent = Signal()

#: An outbox item was given up (dead, expired, parked). kwargs: ``outbox``, ``connection``,
#: ``reason``.
event_failed = Signal()

#: Sent by the outbox sweeper every minute, for your own monitoring (DogStatsD, Prometheus).
#: kwargs: ``by_status`` (counts of ``pending``, ``parked`` and ``dead`` rows, each counted
#: up to 10,000, ``outbox.COUNT_CAP``: 10,000 means at least that many),
#: ``oldest_due_seconds`` (how long the oldest due row has waited unclaimed, or ``None``),
#: ``open_breakers`` (domains of the Datadog sites whose breaker is open).
outbox_measured = Signal()
