"""Shared helpers for the lifecycle tests: connections in a known state, Datadog URLs."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models
from django.test import override_settings
from django.utils import timezone

from django_datadog_partner import crypto
from django_datadog_partner.models import Connection, ConnectionStatus
from django_datadog_partner.signals import connection_status_changed

API = "https://api.datadoghq.com"
TOKEN_URL = f"{API}/oauth2/v1/token"
REVOKE_URL = f"{API}/oauth2/v1/revoke"
VALIDATE_URL = f"{API}/api/v1/validate"


def partner_settings(**overrides: Any) -> override_settings:
    """The test ``DATADOG_PARTNER`` with some keys replaced."""
    return override_settings(DATADOG_PARTNER={**settings.DATADOG_PARTNER, **overrides})


def make_owner(username: str = "owner") -> Any:
    return get_user_model().objects.create(username=username)


def make_connection(
    owner: models.Model | None = None,
    *,
    access_token: str | None = "at-old",
    refresh_token: str | None = "rt-old",
    api_key: str | None = "ak0123456789abcdef0123456789abcd",
    expires_in: int = 3600,
    status: str = ConnectionStatus.ACTIVE,
    **fields: Any,
) -> Connection:
    """A saved connection; ``expires_in`` seconds from now (negative: already expired)."""
    fields.setdefault("domain", "datadoghq.com")
    fields.setdefault("site", "https://app.datadoghq.com")
    fields.setdefault("dd_org_id", f"org-{Connection.objects.count() + 1}")
    fields.setdefault("dd_org_name", "Acme")
    connection = Connection(status=status, **fields)
    connection.set_owner(owner if owner is not None else make_owner(f"owner{fields['dd_org_id']}"))
    connection.access_token = access_token
    connection.refresh_token = refresh_token
    connection.api_key = api_key
    if api_key:
        connection.api_key_last4 = crypto.last4(api_key)
        connection.api_key_fingerprint = crypto.fingerprint(api_key)
    connection.expires_at = timezone.now() + timedelta(seconds=expires_in)
    connection.save()
    return connection


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
