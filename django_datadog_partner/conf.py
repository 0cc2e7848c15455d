"""The one accessor for the ``DATADOG_PARTNER`` settings dict.

Every property reads ``settings.DATADOG_PARTNER`` when it is called (the dict is kept
until Django's ``setting_changed`` names it), so ``override_settings`` works in tests and
nothing is frozen at import time. A secret that
cannot be read (a missing setting, a ``CLIENT_SECRET`` callable that raises) is a
``ConfigurationError``, which the package's views answer with their misconfiguration page.

Just over 300 lines for one concern: one small property per setting (its default, its
validation, the error naming the key), documented in ``docs/reference/settings``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string
from django.views.decorators.debug import sensitive_variables

from .exceptions import ConfigurationError

SETTING_NAME = "DATADOG_PARTNER"


def _missing(key: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"Set {SETTING_NAME}[{key!r}] in your settings: {why}")


def resolve_callable(value: Any, key: str) -> Callable[..., Any]:
    """Accept a callable or a dotted path to one (the dj-stripe convention)."""
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"{SETTING_NAME}[{key!r}] names {value!r}, which cannot be imported: {exc}"
            ) from exc
    if not callable(value):
        raise ImproperlyConfigured(f"{SETTING_NAME}[{key!r}] must be a callable or a dotted path.")
    return value


class PartnerSettings:
    """Typed, documented view of ``settings.DATADOG_PARTNER`` (docs/reference/settings.rst)."""

    #: The settings dict as last read; forgotten whenever Django reports the setting
    #: changed (``override_settings``, pytest-django's ``settings``). The dict itself is
    #: kept, not a copy, so a change made inside it shows at once. Reading it through
    #: ``django.conf.settings`` costs ~1 us, twice on every tracked save.
    _raw: Mapping[str, Any] | None = None

    @property
    def raw(self) -> Mapping[str, Any]:
        value = self._raw
        if value is None:
            value = getattr(settings, SETTING_NAME, {})
            if not isinstance(value, Mapping):
                raise ImproperlyConfigured(f"{SETTING_NAME} must be a dict.")
            self._raw = value
        return value

    def forget(self) -> None:
        self._raw = None

    def _get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    # --- OAuth client -------------------------------------------------------------------

    @property
    def CLIENT_ID(self) -> str:
        value = self._get("CLIENT_ID")
        if not value:
            raise _missing("CLIENT_ID", "the OAuth client id from Datadog's Developer Platform.")
        return str(value)

    @property
    @sensitive_variables()
    def CLIENT_SECRET(self) -> str:
        """A string, or a callable called on every use so a secrets manager can rotate it.

        A string is always taken literally (a secret could look like a dotted path). A
        callable that raises is a ``ConfigurationError`` naming only the exception's type.
        """
        value = self._get("CLIENT_SECRET")
        if callable(value):
            try:
                value = value()
            except Exception as exc:
                raise ConfigurationError(
                    f"{SETTING_NAME}['CLIENT_SECRET'] is a callable that raised "
                    f"{type(exc).__name__}, so no client secret could be read."
                ) from exc
        if not value:
            raise _missing(
                "CLIENT_SECRET",
                "the OAuth client secret from Datadog's Developer Platform "
                "(a string, or a callable returning it).",
            )
        return str(value)

    @property
    def SCOPES(self) -> list[str]:
        """Empty by default: Datadog grants the scopes configured on the client."""
        value = self._get("SCOPES", [])
        if isinstance(value, str):
            return value.split()
        return [str(s) for s in value]

    @property
    def BASE_URL(self) -> str:
        """The public origin used to build the redirect URI (never the Host header)."""
        value = self._get("BASE_URL")
        if not value:
            raise _missing(
                "BASE_URL",
                "the public https origin of this site, e.g. 'https://app.example.com'.",
            )
        return str(value).rstrip("/")

    # --- Secrets at rest ----------------------------------------------------------------

    @property
    def ENCRYPTION_KEYS(self) -> list[str]:
        """Fernet keys, newest first; the first one encrypts, all of them decrypt."""
        value = self._get("ENCRYPTION_KEYS")
        if not value:
            raise _missing(
                "ENCRYPTION_KEYS",
                "a list of Fernet keys, newest first "
                "(generate one with `python -m django_datadog_partner.crypto`).",
            )
        if isinstance(value, str):
            value = [value]
        return [str(k) for k in value]

    # --- Sites --------------------------------------------------------------------------

    @property
    def EXTRA_SITES(self) -> Mapping[str, Mapping[str, str]]:
        value = self._get("EXTRA_SITES", {})
        return value if isinstance(value, Mapping) else {}

    # --- HTTP ---------------------------------------------------------------------------

    @property
    def HTTP_TIMEOUT(self) -> tuple[float, float]:
        """(connect, read) seconds for every request to Datadog."""
        value = self._get("HTTP_TIMEOUT", (3.05, 10.0))
        if isinstance(value, int | float):
            return (float(value), float(value))
        connect, read = value
        return (float(connect), float(read))

    @property
    def MAX_RESPONSE_BYTES(self) -> int:
        return int(self._get("MAX_RESPONSE_BYTES", 1_048_576))

    # --- Sandbox ------------------------------------------------------------------------

    @property
    def SANDBOX_FORCE(self) -> bool:
        """Let the sandbox app load with ``DEBUG`` off (test settings only; never production)."""
        return bool(self._get("SANDBOX_FORCE", False))

    # --- Connect flow -------------------------------------------------------------------

    @property
    def OWNERS_FOR_USER(self) -> Callable[..., Any]:
        """Hook ``(user) -> list of owners`` the user may connect; default: the user alone."""
        return self.hook("OWNERS_FOR_USER", "django_datadog_partner.permissions.user_alone")

    @property
    def CAN_MANAGE_CONNECTION(self) -> Callable[..., Any]:
        """Hook ``(user, connection) -> bool``: may the user manage the connection.

        Default: the owner is one of ``OWNERS_FOR_USER(user)``, or the user holds the
        ``datadog_partner.manage_connection`` permission (see ``permissions``).
        """
        return self.hook(
            "CAN_MANAGE_CONNECTION", "django_datadog_partner.permissions.owner_or_manager"
        )

    @property
    def SUCCESS_URL(self) -> str:
        """Where the "back to the product" link on the result pages points."""
        return str(self._get("SUCCESS_URL", "/"))

    @property
    def REQUIRED_SCOPES(self) -> list[str]:
        """Scopes the token answer must list (checked only when Datadog lists scopes)."""
        value = self._get("REQUIRED_SCOPES", [])
        if isinstance(value, str):
            return value.split()
        return [str(s) for s in value]

    # --- Telemetry ----------------------------------------------------------------------

    @property
    def TRACKED_MODELS(self) -> Mapping[str, Mapping[str, Any]]:
        """``{"app_label.Model": {"owner": ..., "on": [...], ...}}``, read once at startup."""
        value = self._get("TRACKED_MODELS", {})
        if not isinstance(value, Mapping):
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['TRACKED_MODELS'] must be a dict keyed by 'app_label.Model'."
            )
        return value

    @property
    def KICK_ON_COMMIT(self) -> bool:
        """Enqueue a delivery task after commits (off: drain with the command from cron)."""
        return bool(self._get("KICK_ON_COMMIT", True))

    @property
    def KICK_INTERVAL(self) -> float:
        """Seconds: at most one kick per process per interval; a delivery task lingers as long."""
        return self._seconds("KICK_INTERVAL", 0.5)

    @property
    def DELIVERY_CONCURRENCY(self) -> int:
        """Most requests in flight per delivery task (bounded by the HTTP pool size and by
        half the process's socket budget, ``descriptors.socket_budget``); a task uses as many
        as the round trip needs (Little's law, ``delivery/pacing.py``)."""
        return max(1, int(self._get("DELIVERY_CONCURRENCY", 2048)))

    @property
    def DELIVERY_BATCH_SIZE(self) -> int:
        """Outbox rows claimed at once by a delivery task."""
        return max(1, int(self._get("DELIVERY_BATCH_SIZE", 200)))

    @property
    def EVENT_MAX_AGE(self) -> float:
        """Seconds after which events and logs expire; kept under Datadog's 18 hours."""
        return min(self._seconds("EVENT_MAX_AGE", 17 * 3600), 18 * 3600 - 300)

    @property
    def METRIC_MAX_AGE(self) -> float:
        """Seconds after which metric points expire; kept under Datadog's 1 hour."""
        return min(self._seconds("METRIC_MAX_AGE", 50 * 60), 3600 - 120)

    @property
    def SERVICE_CHECK_MAX_AGE(self) -> float:
        """Seconds after which service checks expire; kept under Datadog's 10 minutes."""
        return min(self._seconds("SERVICE_CHECK_MAX_AGE", 8 * 60), 600 - 60)

    @property
    def HEARTBEAT_METRIC(self) -> str:
        """The gauge the sweeper sends each active connection (the listing's metric check);
        empty: no heartbeat. Default ``<SOURCE_TYPE_NAME>.heartbeat``, made a metric name."""
        value = self._get("HEARTBEAT_METRIC")
        if value is None:
            prefix = re.sub(r"[^a-z0-9_.]", "_", self.SOURCE_TYPE_NAME.lower()).strip("_.")
            return f"{prefix or 'integration'}.heartbeat"
        return str(value)

    @property
    def HEARTBEAT_INTERVAL(self) -> float:
        """Seconds: at most one heartbeat per connection per interval (the sweeper runs
        every minute, so shorter intervals mean one a minute)."""
        return max(60.0, self._seconds("HEARTBEAT_INTERVAL", 300))

    @property
    def METRICS(self) -> Mapping[str, Mapping[str, Any]]:
        """The metrics the integration sends, for the listing's ``metadata.csv``:
        ``{"name": {"type": "count", "unit": "request", "description": ...}}``."""
        value = self._get("METRICS", {})
        if not isinstance(value, Mapping):
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['METRICS'] must be a dict keyed by metric name."
            )
        return value

    @property
    def SAMPLE_LOGS(self) -> list[Mapping[str, Any]]:
        """Log entries, as ``send_log()`` keyword arguments, exported in intake format for
        the listing's log pipeline (``datadog_partner_listing``)."""
        value = self._get("SAMPLE_LOGS", [])
        if isinstance(value, Mapping | str) or not isinstance(value, Sequence):
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['SAMPLE_LOGS'] must be a list of send_log() argument dicts."
            )
        return list(value)

    @property
    def UNINSTALL_TEXT(self) -> str:
        """The listing's uninstallation instructions (``{product}`` is replaced); empty:
        the package's text."""
        return str(self._get("UNINSTALL_TEXT") or "")

    @property
    def BACKOFF_BASE(self) -> float:
        """Seconds: retry n waits a random time in [0, min(BACKOFF_CAP, BASE * 2**(n-1))]."""
        return self._seconds("BACKOFF_BASE", 2.0)

    @property
    def BACKOFF_CAP(self) -> float:
        return self._seconds("BACKOFF_CAP", 15 * 60)

    @property
    def OUTBOX_STALE_AFTER(self) -> float:
        """Seconds a due outbox row may wait unclaimed before check W015 warns."""
        return self._seconds("OUTBOX_STALE_AFTER", 15 * 60)

    @property
    def LEASE_SECONDS(self) -> float:
        """How long a claimed row stays reserved after its claim or its run's last renewal
        (every quarter of it while the run works); a killed worker's rows return after it."""
        return self._seconds("LEASE_SECONDS", 20)

    @property
    def BREAKER_THRESHOLD(self) -> int:
        """Consecutive 5xx/network failures that open a site's breaker (0: never)."""
        return max(0, int(self._get("BREAKER_THRESHOLD", 5)))

    @property
    def BREAKER_COOLDOWN(self) -> float:
        """Seconds an open breaker sends nothing before one probe tests the site again."""
        return max(1.0, self._seconds("BREAKER_COOLDOWN", 60))

    @property
    def SOURCE_TYPE_NAME(self) -> str:
        """Events' ``source_type_name`` and ``source:`` tag: your integration's name."""
        return str(self._get("SOURCE_TYPE_NAME", "my_apps"))

    @property
    def LOG_SOURCE(self) -> str:
        """Logs' ``ddsource`` (lowercase; Datadog wants the integration name)."""
        return str(self._get("LOG_SOURCE", self.SOURCE_TYPE_NAME)).lower()

    @property
    def LOG_SERVICE(self) -> str:
        """Logs' default ``service`` (lowercase)."""
        return str(self._get("LOG_SERVICE", self.LOG_SOURCE)).lower()

    def _seconds(self, key: str, default: float) -> float:
        value = self._get(key, default)
        if isinstance(value, timedelta):
            return value.total_seconds()
        return float(value)

    # --- Hooks --------------------------------------------------------------------------

    def hook(self, key: str, default: str) -> Callable[..., Any]:
        return resolve_callable(self._get(key, default), key)

    def get_list(self, key: str, default: Sequence[Any] = ()) -> list[Any]:
        return list(self._get(key, default))


app_settings = PartnerSettings()


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        app_settings.forget()


setting_changed.connect(_forget, dispatch_uid="datadog_partner.conf")
