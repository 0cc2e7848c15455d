"""AT-11: concurrent deliveries of one callback consume its state exactly once."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import responses
from django.conf import settings
from django.db import connection as db_connection
from django.db import connections
from django.test import Client

from django_datadog_partner.models import Connection
from tests.connect_support import (
    CONNECTED,
    api,
    callback,
    key_json,
    make_user,
    signed_in,
    start,
    token_json,
)

THREADS = 10


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_callbacks_make_one_token_request_and_one_connection(
    django_user_model: Any, mocked_http: responses.RequestsMock
) -> None:
    if db_connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers; run with DATABASE_URL=postgres://… (AT-11)")
    alice = make_user(django_user_model, "alice")
    browser = signed_in(alice)
    started = start(browser)
    session_cookie = browser.cookies[settings.SESSION_COOKIE_NAME].value

    def slow_token_endpoint(request: Any) -> tuple[int, dict[str, str], str]:
        time.sleep(0.2)  # keep the winner in flight while the duplicates arrive
        return 200, {}, json.dumps(token_json())

    mocked_http.add_callback("POST", api("datadoghq.com", "/oauth2/v1/token"), slow_token_endpoint)
    mocked_http.post(
        api("datadoghq.com", "/api/v2/api_keys/marketplace"), json=key_json(), status=201
    )
    barrier = threading.Barrier(THREADS)
    locations: list[str] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            duplicate = Client()
            duplicate.cookies[settings.SESSION_COOKIE_NAME] = session_cookie
            barrier.wait()
            locations.append(callback(duplicate, started.state)["Location"])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    token_calls = [c for c in mocked_http.calls if str(c.request.url).endswith("/oauth2/v1/token")]
    assert len(token_calls) == 1
    assert Connection.objects.count() == 1
    assert sorted(locations) == sorted(
        [CONNECTED] + ["/datadog/error/?reason=state_used"] * (THREADS - 1)
    )
