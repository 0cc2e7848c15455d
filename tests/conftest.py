"""Shared fixtures: canary secrets, a DEBUG log capture that fails on leaks, owners, the
delivery kicks a test would have enqueued.

The support modules are a pytest plugin (``pytest_plugins`` below): each registers its
fixtures (``alice``; ``conn``, ``intake``; ``status_changes``; ``qcluster``;
``partner_settings``) and its helpers stay importable (``from tests.connect_support import
start``). Connections come from the shipped kit's ``django_datadog_partner.testing.
make_connection`` (or ``FakeDatadog.connection``), as in a host project's tests.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import responses as responses_lib

from django_datadog_partner import client

pytest_plugins = [
    "tests.connect_support",
    "tests.outbox_support",
    "tests.lifecycle_support",
    "tests.e2e_support",
    "tests.tenant_support",
]


@pytest.fixture(autouse=True)
def _fresh_http_session() -> Iterator[None]:
    from django_datadog_partner.delivery import run

    client.reset_session()
    run.forget()  # each test's first run starts at the sender's START again
    yield
    client.reset_session()


@pytest.fixture
def fake() -> Iterator[Any]:
    """The test kit's fake Datadog (``FakeDatadog``), answering through ``responses``."""
    from django_datadog_partner.testing import FakeDatadog

    with FakeDatadog() as datadog:
        yield datadog


@pytest.fixture
def datadog(fake: Any) -> Any:
    """``fake`` by the name the how-to's examples use."""
    return fake


@pytest.fixture
def acme() -> Any:
    """An owner of the test app (``Organization``)."""
    from tests.testapp.models import Organization

    return Organization.objects.create(name="Acme")


@pytest.fixture
def org(acme: Any) -> Any:
    """The owner the delivery tests send for (``acme``)."""
    return acme


@pytest.fixture
def kicks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Delivery tasks that would have been enqueued (``enqueue_delivery``'s counts)."""
    from django_datadog_partner.delivery import kick

    enqueued: list[int] = []
    monkeypatch.setattr(kick, "enqueue_delivery", lambda count=1: enqueued.append(count))
    kick.reset()
    yield enqueued
    kick.reset()


@pytest.fixture
def mocked_http() -> Iterator[responses_lib.RequestsMock]:
    """``responses`` with every unmatched request failing the test."""
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


class Canaries(dict[str, str]):
    """Unique random secrets; ``assert_absent(text)`` proves none leaked into ``text``."""

    def assert_absent(self, text: str, where: str = "output") -> None:
        leaked = [name for name, value in self.items() if value in text]
        assert not leaked, f"secret(s) {leaked} leaked into {where}"


@pytest.fixture
def canaries() -> Canaries:
    return Canaries(
        client_secret="cs-canary-" + secrets.token_hex(12),
        code="code-canary-" + secrets.token_hex(12),
        access_token="at-canary-" + secrets.token_hex(12),
        refresh_token="rt-canary-" + secrets.token_hex(12),
        api_key="ak" + secrets.token_hex(15),
    )


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG (oauthlib, requests_oauthlib, urllib3, django, django_q...)."""
    names = ["", "oauthlib", "requests_oauthlib", "urllib3", "requests", "django", "django_q",
             "django.request", "django_datadog_partner"]  # fmt: skip
    old = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield caplog
    for name, level in old.items():
        logging.getLogger(name).setLevel(level)
