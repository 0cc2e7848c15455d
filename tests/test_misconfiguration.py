"""No 500 from a package view, whatever the configuration.

Every page of the package is requested under each broken secret source: a
``CLIENT_SECRET`` callable that raises, ``ENCRYPTION_KEYS=[]``, an ``ENCRYPTION_KEYS``
value that is not a Fernet key, and a ``DATADOG_PARTNER`` that is not even a dict. The
only 5xx allowed is the package's own misconfiguration page (503, with its template), with
a log line; no page holds a traceback and no log or page holds the failing source's words.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import responses
from django.test import Client
from django.utils import timezone

from django_datadog_partner import failures, permissions
from django_datadog_partner.models import Connection, ConnectionStatus
from tests.connect_support import ONBOARDING, api, signed_in, start, token_json

pytestmark = pytest.mark.django_db

SECRET_STORE_WORDS = "vault said: token=s.store-canary-5f1e"
MALFORMED_KEY = "not-a-fernet-key-canary-77a1"
CONFIRM = f"{ONBOARDING}?domain=datadoghq.com&site=app.datadoghq.com"


def failing_secret_source() -> str:
    raise RuntimeError(SECRET_STORE_WORDS)


BROKEN: dict[str, Callable[[dict[str, Any]], Any]] = {
    "CLIENT_SECRET callable raises": lambda good: {**good, "CLIENT_SECRET": failing_secret_source},
    "ENCRYPTION_KEYS empty": lambda good: {**good, "ENCRYPTION_KEYS": []},
    "ENCRYPTION_KEYS malformed": lambda good: {**good, "ENCRYPTION_KEYS": [MALFORMED_KEY]},
    "DATADOG_PARTNER not a dict": lambda good: "CLIENT_ID=x",
}


class World:
    """What the pages act on, made while the configuration still worked."""

    def __init__(self, user: Any, client: Client) -> None:
        self.user, self.client = user, client
        self.state = start(client).state
        connection = Connection(
            domain="datadoghq.com", site="https://app.datadoghq.com", dd_org_id="org-1"
        )
        connection.status = ConnectionStatus.KEY_MISSING
        connection.set_owner(user)
        connection.access_token, connection.refresh_token = "at-old", "rt-old"
        connection.expires_at = timezone.now() - timedelta(minutes=1)  # a refresh comes first
        connection.save()
        self.pk = connection.pk
        self.owner = permissions.owner_choice_value(user)


PAGES: dict[str, Callable[[World], Any]] = {
    "site picker": lambda w: w.client.get(ONBOARDING),
    "onboarding": lambda w: w.client.get(CONFIRM),
    "onboarding confirmed": lambda w: w.client.post(CONFIRM, {"owner": w.owner}),
    "callback": lambda w: w.client.get(f"/datadog/callback/?code=c0de&state={w.state}"),
    "callback with an error": lambda w: w.client.get(
        f"/datadog/callback/?error=access_denied&state={w.state}"
    ),
    "connected": lambda w: w.client.get("/datadog/connected/"),
    "error": lambda w: w.client.get("/datadog/error/?reason=state_expired"),
    "connection list": lambda w: w.client.get("/datadog/connections/"),
    "connection detail": lambda w: w.client.get(f"/datadog/connections/{w.pk}/"),
    "disconnect": lambda w: w.client.post(f"/datadog/connections/{w.pk}/disconnect/"),
    "reconnect": lambda w: w.client.post(f"/datadog/connections/{w.pk}/reconnect/"),
    "create the API key": lambda w: w.client.post(f"/datadog/connections/{w.pk}/api-key/"),
}

#: The cases first reported: they must give the misconfiguration page itself.
REPRODUCED = {
    ("CLIENT_SECRET callable raises", "create the API key"),
    ("CLIENT_SECRET callable raises", "callback"),
    ("ENCRYPTION_KEYS empty", "onboarding confirmed"),
}


def is_misconfiguration_page(response: Any) -> bool:
    names = [template.name for template in response.templates]
    return (
        response.status_code == 503
        and "datadog_partner/error.html" in names
        and response.context["reason"] == failures.MISCONFIGURED
    )


@pytest.mark.parametrize("page", list(PAGES))
@pytest.mark.parametrize("config", list(BROKEN))
def test_every_page_answers_a_broken_secret_source_without_a_500(
    config: str,
    page: str,
    settings: Any,
    django_user_model: Any,
    mocked_http: responses.RequestsMock,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    mocked_http.post(api("datadoghq.com", "/oauth2/v1/token"), json=token_json())
    user = django_user_model.objects.create_user(username="alice", password="pw")
    client = signed_in(user)
    client.raise_request_exception = False
    world = World(user, client)
    settings.DATADOG_PARTNER = BROKEN[config](settings.DATADOG_PARTNER)
    debug_logs.clear()

    responses_seen = [PAGES[page](world)]
    first = responses_seen[0]
    if first.status_code == 302 and first["Location"].startswith("/"):
        responses_seen.append(client.get(first["Location"]))

    for response in responses_seen:
        text = response.content.decode(errors="replace")
        assert response.status_code < 500 or is_misconfiguration_page(response), (
            response.status_code,
            text[:300],
        )
        assert "Traceback" not in text and SECRET_STORE_WORDS not in text
        assert MALFORMED_KEY not in text
    final = responses_seen[-1]
    if is_misconfiguration_page(final):
        logged = [r for r in debug_logs.records if r.name.startswith("django_datadog_partner")]
        assert any("misconfigured" in r.getMessage() for r in logged)
        assert all(r.exc_info is None for r in logged if r.levelno >= logging.ERROR)
    if (config, page) in REPRODUCED:
        assert is_misconfiguration_page(final)
    assert SECRET_STORE_WORDS not in debug_logs.text and MALFORMED_KEY not in debug_logs.text


def test_disconnect_with_a_broken_client_secret_says_so_and_keeps_revoking(
    settings: Any, django_user_model: Any, mocked_http: responses.RequestsMock
) -> None:
    user = django_user_model.objects.create_user(username="alice", password="pw")
    client = signed_in(user)
    world = World(user, client)
    settings.DATADOG_PARTNER = BROKEN["CLIENT_SECRET callable raises"](settings.DATADOG_PARTNER)
    response = client.post(f"/datadog/connections/{world.pk}/disconnect/", follow=True)
    assert response.status_code == 200
    assert "misconfigured (the vendor must fix it)" in response.content.decode()
    connection = Connection.objects.get(pk=world.pk)
    assert connection.status == ConnectionStatus.REVOKING and connection.refresh_token is not None
    assert len(mocked_http.calls) == 0
