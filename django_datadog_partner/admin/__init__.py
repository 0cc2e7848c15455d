"""Admin screens: connections with their lifecycle actions, authorizations, alarms."""

from . import connections, records  # noqa: F401
