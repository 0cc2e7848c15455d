"""`manage.py check` on the example project names each misconfiguration with its id and hint,
and the example is safe to deploy once real credentials are set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
SECRET_KEY = "t2Bq9-zXwL4mN7pR1sV6bZ0dK5mA3eU8iO2wQ9YcF4hJ6gT1yE5rW0uI7oP3aS8d"
REAL = {"DATADOG_CLIENT_ID": "abc", "SECRET_KEY": SECRET_KEY}
# The production variables docs/tutorial.rst documents for the example project.
PRODUCTION = {
    "DATADOG_CLIENT_ID": "abc",
    "DATADOG_CLIENT_SECRET": "client-secret",
    "DATADOG_PARTNER_ENCRYPTION_KEYS": "Xq1yG3Lw3hJ9cF4tN2pR8sV6bZ0dK5mA7eU1iO3wQ9Y=",
    "SECRET_KEY": SECRET_KEY,
    "BASE_URL": "https://shop.example.com",
    "DATABASE_URL": "postgres://shop@127.0.0.1:5432/shop",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_PRELOAD": "true",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATADOG")}
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY"):
        environment.pop(name, None)
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check(*args: str, **env: str) -> str:
    result = manage("check", *args, **env)
    return result.stdout + result.stderr


def test_the_offline_example_is_clean():
    assert "System check identified no issues" in check()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (REAL, ["datadog_partner.E002", "datadog_partner.E006"]),
        (
            {**REAL, "DATADOG_CLIENT_SECRET": "s", "DATADOG_PARTNER_ENCRYPTION_KEYS": "bad",
             "BASE_URL": "http://shop.example"},
            ["datadog_partner.E005", "datadog_partner.E007"],
        ),
    ],
)  # fmt: skip
def test_misconfigurations_are_reported_with_id_and_hint(env, expected):
    output = check(**env)
    for check_id in expected:
        assert f"({check_id})" in output
    assert output.count("HINT:") >= len(expected)
    assert "Traceback" not in output


def test_the_documented_production_variables_pass_check_deploy():
    output = check("--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert "System check identified no issues (0 silenced)." in output, output


def test_the_production_variables_are_documented():
    tutorial = (ROOT / "docs" / "tutorial.rst").read_text()
    section = tutorial.split("How it is configured\n")[1]
    for name, value in PRODUCTION.items():
        assert f"``{name}``" in section
        if name.startswith("SECURE_"):
            assert f"{name}={value}" in section


@pytest.mark.parametrize("secret_key", [None, ""], ids=["unset", "empty"])
def test_real_credentials_without_secret_key_are_refused_with_the_variable_named(secret_key):
    env = {name: value for name, value in PRODUCTION.items() if name != "SECRET_KEY"}
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    result = manage("check", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured: Set the SECRET_KEY environment variable" in result.stderr


@pytest.mark.parametrize(
    ("env", "debug"),
    [({}, "True"), (REAL, "False"), (PRODUCTION, "False"), ({**REAL, "DEBUG": "true"}, "True")],
)
def test_debug_is_on_only_offline_unless_set(env, debug):
    shown = manage("shell", "-c", "from django.conf import settings; print(settings.DEBUG)", **env)
    assert shown.stdout.splitlines()[-1] == debug, shown.stderr


def test_the_integration_pages_use_the_shops_layout():
    """The shop overrides ``datadog_partner/base.html``, as a host would."""
    code = (
        "from django.template.loader import render_to_string; "
        "print(render_to_string('datadog_partner/site_picker.html', {'sites': []}))"
    )
    page = manage("shell", "-c", code).stdout
    assert "Example shop" in page and "datadog_partner/partner.css" in page
    assert 'class="datadog-partner"' not in page  # the app's own page width is not imposed
