"""Admin screens: connections with their lifecycle actions, the status dashboard,
authorizations, alarms, outbox."""

from . import connections, dashboard, outbox, records  # noqa: F401
