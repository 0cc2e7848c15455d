"""Shared helpers for the lifecycle tests: connections in a known state, Datadog URLs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
from django.contrib.auth import get_user_model

from django_datadog_partner.models import Connection
from django_datadog_partner.signals import connection_status_changed

API = "https://api.datadoghq.com"
TOKEN_URL = f"{API}/oauth2/v1/token"
REVOKE_URL = f"{API}/oauth2/v1/revoke"
VALIDATE_URL = f"{API}/api/v1/validate"


class _Applied:
    """One ``partner_settings(...)`` call; a ``with`` block around it ends it early."""

    def __init__(self, settings: Any, previous: dict[str, Any]) -> None:
        self.settings, self.previous = settings, previous

    def __enter__(self) -> _Applied:
        return self

    def __exit__(self, *exc: object) -> None:
        self.settings.DATADOG_PARTNER = self.previous


@pytest.fixture
def partner_settings(settings: Any) -> Callable[..., _Applied]:
    """The tests' one way to change the package's settings: ``partner_settings(KEY=value)``
    merges keys into ``DATADOG_PARTNER`` for the rest of the test, ``with
    partner_settings(KEY=value):`` for a block. It goes through pytest-django's ``settings``
    fixture, so every change is undone in order when the test ends."""

    def apply(**keys: Any) -> _Applied:
        previous = settings.DATADOG_PARTNER
        settings.DATADOG_PARTNER = {**previous, **keys}
        return _Applied(settings, previous)

    return apply


def make_owner(username: str = "owner") -> Any:
    return get_user_model().objects.create(username=username)


def all_rows() -> list[dict[str, Any]]:
    """Every connection row as stored (raw column values), to prove nothing changed."""
    columns = [f.attname for f in Connection._meta.concrete_fields]
    return list(Connection.objects.order_by("pk").values(*columns))


def token_json(access: str = "at-new", refresh: str | None = "rt-new", **extra: Any) -> dict:
    body: dict[str, Any] = {"access_token": access, "token_type": "bearer", "expires_in": 3600}
    if refresh is not None:
        body["refresh_token"] = refresh
    body.update(extra)
    return body


def form(request: Any) -> dict[str, str]:
    """The form body of a recorded request, as a flat dict."""
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return {key: values[0] for key, values in parse_qs(body).items()}


def oauth_error(code: str, description: str = "") -> str:
    """Datadog's own error shape: ``{"errors": ["<code> - <text>"]}``."""
    return json.dumps({"errors": [f"{code} - {description or code}"]})


def secrets_of(connection: Connection) -> dict[str, str | None]:
    connection.refresh_from_db()
    return {
        name: (secret.reveal() if secret is not None else None)
        for name, secret in (
            ("access_token", connection.access_token),
            ("refresh_token", connection.refresh_token),
            ("api_key", connection.api_key),
        )
    }


class StatusChanges(list):
    """Records ``connection_status_changed`` sends as ``(pk, old, new, reason)``."""

    def receiver(self, sender: Any, connection: Connection, old: str, new: str, reason: str,
                 **kwargs: Any) -> None:  # fmt: skip
        self.append((connection.pk, old, new, reason))


@pytest.fixture(name="status_changes")
def status_changes_fixture() -> Any:
    changes = StatusChanges()
    connection_status_changed.connect(changes.receiver, weak=False)
    yield changes
    connection_status_changed.disconnect(changes.receiver)
