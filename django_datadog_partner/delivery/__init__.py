"""Delivery of outbox rows to Datadog's intake: the run (``run``: claim, route, send),
``routing``, ``transmit`` (the requests and what each answer means), ``sending`` (one
batch's requests, outcomes written as they come, its lease renewed), ``pacing`` (how many
requests are in flight), ``outcomes`` (what is recorded, backoff, pauses), the per-site
``breaker`` and the coalesced ``kick``.

It writes outbox rows through ``outbox``, moves connection statuses through ``status`` and
raises ``alarms``; it never calls the connection operations.
"""

from .outcomes import Summary
from .run import claim, concurrency, deliver, drain, leased_rows_waiting

__all__ = ["Summary", "claim", "concurrency", "deliver", "drain", "leased_rows_waiting"]
