"""A local stand-in for Datadog: tile, OAuth server, marketplace API key and intake.

Add ``"django_datadog_partner.sandbox"`` to ``INSTALLED_APPS`` in development, mount its
URLs and register it as a site with :func:`site_entry`. It refuses to start when ``DEBUG``
is off unless ``DATADOG_PARTNER["SANDBOX_FORCE"]`` is set (test settings only).

This module stays import-light: settings files may import :func:`site_entry`.
"""

from __future__ import annotations

SANDBOX_DOMAIN = "sandbox.localhost"
"""The ``domain`` the sandbox is registered under in ``EXTRA_SITES`` by convention."""


def site_entry(base_url: str, name: str = "Sandbox") -> dict[str, str]:
    """The ``EXTRA_SITES`` value for a sandbox mounted at ``base_url``.

    The web (authorize), API and logs hosts are the same server; the client appends
    ``/api/v1/events`` and friends to these URLs, so a path prefix works.
    """
    base = base_url.rstrip("/")
    return {"name": name, "web_url": base, "api_url": base, "logs_url": base}
