"""Every system check id fires for its misconfiguration and stays quiet otherwise."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from django_datadog_partner.checks import check_settings

GOOD: dict[str, Any] = dict(settings.DATADOG_PARTNER)


def ids(**overrides: Any) -> list[str]:
    config = {**GOOD, **overrides}
    config = {k: v for k, v in config.items() if v is not None}
    with override_settings(DATADOG_PARTNER=config):
        return [message.id for message in check_settings() if message.id]


def test_valid_configuration_passes():
    assert ids() == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"CLIENT_ID": None}, "datadog_partner.E001"),
        ({"CLIENT_SECRET": None}, "datadog_partner.E002"),
        ({"BASE_URL": None}, "datadog_partner.E003"),
        ({"BASE_URL": "app.example.com"}, "datadog_partner.E004"),
        ({"BASE_URL": "https://app.example.com/datadog"}, "datadog_partner.E004"),
        ({"BASE_URL": "http://app.example.com"}, "datadog_partner.E005"),
        ({"ENCRYPTION_KEYS": None}, "datadog_partner.E006"),
        ({"ENCRYPTION_KEYS": []}, "datadog_partner.E006"),
        ({"ENCRYPTION_KEYS": ["not-a-fernet-key"]}, "datadog_partner.E007"),
        ({"EXTRA_SITES": "nope"}, "datadog_partner.E009"),
        ({"EXTRA_SITES": {"datadoghq.com": {"web_url": "https://x", "api_url": "https://x"}}},
         "datadog_partner.E009"),
        ({"EXTRA_SITES": {"sb.test": {"web_url": "https://x"}}}, "datadog_partner.E009"),
        ({"EXTRA_SITES": {"sb.test": {"web_url": "http://sandbox.example", "api_url":
          "https://a.example", "logs_url": "https://a.example"}}}, "datadog_partner.E009"),
    ],
)  # fmt: skip
def test_each_misconfiguration_is_reported_with_its_id(overrides, expected):
    assert expected in ids(**overrides)


def test_http_base_url_is_fine_in_debug():
    with override_settings(DEBUG=True):
        assert ids(BASE_URL="http://127.0.0.1:8000") == []


def test_loopback_extra_site_may_use_plain_http():
    loopback = {"web_url": "http://127.0.0.1:8000/sandbox", "api_url": "http://localhost:8000",
                "logs_url": "http://[::1]:8000/x"}  # fmt: skip
    assert ids(EXTRA_SITES={"sb.test": loopback}) == []


def test_missing_django_q_is_reported():
    apps = [app for app in settings.INSTALLED_APPS if app != "django_q"]
    with override_settings(INSTALLED_APPS=apps):
        assert "datadog_partner.E008" in [m.id for m in check_settings()]


def test_every_message_has_a_hint():
    with override_settings(DATADOG_PARTNER={}):
        messages = check_settings()
    assert {m.id for m in messages} >= {f"datadog_partner.E00{i}" for i in (1, 2, 3, 6)}
    assert all(m.hint for m in messages)


def test_every_check_is_registered_and_runs_through_manage_py_check():
    """``manage.py check`` runs our checks (registered by importing the app), so a broken
    setting fails it, and the database checks run with ``--database``."""
    from io import StringIO

    from django.core.checks.registry import registry
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from django_datadog_partner import checks

    ours = {
        getattr(getattr(fn, "__wrapped__", fn), "__name__", "")
        for fn in registry.get_checks(include_deployment_checks=True)
        if fn.__module__ == checks.__name__
    }
    assert ours == {
        "check_settings", "check_q_cluster", "check_lease", "check_outbox_sweeper",
        "check_outbox_draining", "check_lifecycle", "check_listing_declarations",
    }  # fmt: skip
    broken = {**GOOD, "BASE_URL": "http://app.example.com"}
    with (
        override_settings(DATADOG_PARTNER=broken),
        pytest.raises(SystemCheckError, match=r"datadog_partner\.E005"),
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command("check", stdout=out, stderr=StringIO())
    assert "no issues" in out.getvalue()
