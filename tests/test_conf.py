"""Settings are read at call time, hooks resolve, and missing values say what to set."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_datadog_partner.conf import app_settings
from django_datadog_partner.exceptions import ConfigurationError


def rotating_secret() -> str:
    rotating_secret.calls += 1  # type: ignore[attr-defined]
    return f"secret-{rotating_secret.calls}"  # type: ignore[attr-defined]


rotating_secret.calls = 0  # type: ignore[attr-defined]


def test_values_follow_override_settings():
    with override_settings(DATADOG_PARTNER={"CLIENT_ID": "one"}):
        assert app_settings.CLIENT_ID == "one"
    with override_settings(DATADOG_PARTNER={"CLIENT_ID": "two"}):
        assert app_settings.CLIENT_ID == "two"


@pytest.mark.parametrize("key", ["CLIENT_ID", "CLIENT_SECRET", "BASE_URL", "ENCRYPTION_KEYS"])
def test_missing_required_value_names_the_setting(key):
    with override_settings(DATADOG_PARTNER={}), pytest.raises(ImproperlyConfigured) as excinfo:
        getattr(app_settings, key)
    assert f"DATADOG_PARTNER['{key}']" in str(excinfo.value)


def test_client_secret_callable_is_called_on_every_use():
    with override_settings(DATADOG_PARTNER={"CLIENT_SECRET": rotating_secret}):
        first, second = app_settings.CLIENT_SECRET, app_settings.CLIENT_SECRET
    assert first != second
    assert first.startswith("secret-")


def test_client_secret_string_is_taken_literally():
    with override_settings(DATADOG_PARTNER={"CLIENT_SECRET": "os.path.join"}):
        assert app_settings.CLIENT_SECRET == "os.path.join"


def test_defaults():
    with override_settings(DATADOG_PARTNER={}):
        assert app_settings.SCOPES == []
        assert app_settings.EXTRA_SITES == {}
        assert app_settings.HTTP_TIMEOUT == (3.05, 10.0)


def test_scopes_accept_a_space_separated_string():
    with override_settings(DATADOG_PARTNER={"SCOPES": "api_keys_write events_read"}):
        assert app_settings.SCOPES == ["api_keys_write", "events_read"]


def test_base_url_loses_its_trailing_slash():
    with override_settings(DATADOG_PARTNER={"BASE_URL": "https://app.example.com/"}):
        assert app_settings.BASE_URL == "https://app.example.com"


def test_hooks_accept_dotted_paths_and_callables():
    with override_settings(DATADOG_PARTNER={"X": "tests.test_conf.rotating_secret"}):
        assert app_settings.hook("X", "builtins.len") is rotating_secret
    with override_settings(DATADOG_PARTNER={}):
        assert app_settings.hook("X", "builtins.len") is len
    with (
        override_settings(DATADOG_PARTNER={"X": "no.such.thing"}),
        pytest.raises(ImproperlyConfigured, match="cannot be imported"),
    ):
        app_settings.hook("X", "builtins.len")
    with override_settings(DATADOG_PARTNER={"X": 42}), pytest.raises(ImproperlyConfigured):
        app_settings.hook("X", "builtins.len")


def test_a_non_dict_setting_is_refused():
    with override_settings(DATADOG_PARTNER=["nope"]), pytest.raises(ImproperlyConfigured):
        _ = app_settings.raw


def _unreachable_vault() -> str:
    raise ConnectionError("vault at 10.0.0.9 said: token s.canary-vault-token expired")


def test_a_raising_client_secret_callable_is_a_configuration_error_naming_its_type():
    with (
        override_settings(DATADOG_PARTNER={"CLIENT_SECRET": _unreachable_vault}),
        pytest.raises(ConfigurationError) as excinfo,
    ):
        _ = app_settings.CLIENT_SECRET
    assert "CLIENT_SECRET" in str(excinfo.value) and "ConnectionError" in str(excinfo.value)
    assert "canary-vault-token" not in str(excinfo.value)


def test_the_settings_dict_is_read_again_after_every_override(settings):
    first = app_settings.KICK_INTERVAL
    with override_settings(DATADOG_PARTNER={**settings.DATADOG_PARTNER, "KICK_INTERVAL": 7}):
        assert app_settings.KICK_INTERVAL == 7
    assert first == app_settings.KICK_INTERVAL
    settings.DATADOG_PARTNER = {**settings.DATADOG_PARTNER, "KICK_INTERVAL": 9}
    assert app_settings.KICK_INTERVAL == 9
    settings.DATADOG_PARTNER["KICK_INTERVAL"] = 11  # inside the same dict: seen at once
    assert app_settings.KICK_INTERVAL == 11
