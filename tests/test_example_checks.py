"""`manage.py check` on the example project names each misconfiguration with its id and hint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"


def check(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATADOG")}
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        environment.pop(name, None)
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=EXAMPLE,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout + result.stderr


def test_the_offline_example_is_clean():
    assert "System check identified no issues" in check()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATADOG_CLIENT_ID": "abc"}, ["datadog_partner.E002", "datadog_partner.E006"]),
        (
            {"DATADOG_CLIENT_ID": "abc", "DATADOG_CLIENT_SECRET": "s", "DEBUG": "false",
             "DATADOG_PARTNER_ENCRYPTION_KEYS": "bad", "BASE_URL": "http://shop.example"},
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
