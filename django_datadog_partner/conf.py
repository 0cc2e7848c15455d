"""The one accessor for the ``DATADOG_PARTNER`` settings dict.

Every property reads ``settings.DATADOG_PARTNER`` when it is called, so
``override_settings`` works in tests and nothing is frozen at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

SETTING_NAME = "DATADOG_PARTNER"


def _missing(key: str, why: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"Set {SETTING_NAME}[{key!r}] in your settings: {why}")


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
    """Typed, documented view of ``settings.DATADOG_PARTNER``; see README "Settings"."""

    @property
    def raw(self) -> Mapping[str, Any]:
        value = getattr(settings, SETTING_NAME, {})
        if not isinstance(value, Mapping):
            raise ImproperlyConfigured(f"{SETTING_NAME} must be a dict.")
        return value

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
    def CLIENT_SECRET(self) -> str:
        """A string, or a callable called on every use so a secrets manager can rotate it.

        A string is always taken literally (a secret could look like a dotted path).
        """
        value = self._get("CLIENT_SECRET")
        if callable(value):
            value = value()
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

    # --- Hooks --------------------------------------------------------------------------

    def hook(self, key: str, default: str) -> Callable[..., Any]:
        return resolve_callable(self._get(key, default), key)

    def get_list(self, key: str, default: Sequence[Any] = ()) -> list[Any]:
        return list(self._get(key, default))


app_settings = PartnerSettings()
