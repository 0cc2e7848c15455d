"""Admin screens: connections with their lifecycle actions, authorizations, alarms, outbox."""

from . import connections, outbox, records  # noqa: F401
