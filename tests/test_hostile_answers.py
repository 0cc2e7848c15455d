"""Hostile answers from Datadog's side: every JSON decode refuses nesting it cannot afford.

``json.loads`` recurses once per nesting level, so ``[[[[…`` from a hostile or broken
peer would raise ``RecursionError`` (an unhandled 500 or a crashed worker) wherever an
answer is decoded. Each decode point must turn it into the package's own error instead.
"""

from __future__ import annotations

import json

import pytest
import responses

from django_datadog_partner import oauth
from django_datadog_partner.api import api_for
from django_datadog_partner.client import DatadogClient, json_body
from django_datadog_partner.conf import app_settings
from django_datadog_partner.connections import create_api_key
from django_datadog_partner.connections.api_keys import KEY_MISSING, MISSING_UNCONFIRMED
from django_datadog_partner.exceptions import (
    DatadogPartnerError,
    OAuthError,
    UnreadableAnswerError,
    describe_response,
)
from django_datadog_partner.models import ConnectionStatus
from django_datadog_partner.regions import get_site
from django_datadog_partner.safejson import MAX_DEPTH as MAX_JSON_DEPTH
from django_datadog_partner.testing import make_connection
from tests.lifecycle_support import API, TOKEN_URL, VALIDATE_URL

pytestmark = pytest.mark.django_db

DEEP_ARRAY = "[" * 100_000
DEEP_OBJECT = '{"a":' * 100_000
MARKETPLACE = f"{API}/api/v2/api_keys/marketplace"


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT])
def test_a_deeply_nested_token_answer_is_an_unusable_token_answer(
    mocked_http: responses.RequestsMock, body: str
) -> None:
    mocked_http.post(TOKEN_URL, status=200, body=body, content_type="application/json")
    with pytest.raises(OAuthError) as info:
        oauth.refresh_tokens(get_site("datadoghq.com"), "rt-old")
    assert info.value.error_code == oauth.INVALID_TOKEN_RESPONSE


def test_a_deeply_nested_error_answer_keeps_its_status_and_drops_its_body(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.post(TOKEN_URL, status=400, body=DEEP_ARRAY, content_type="application/json")
    with pytest.raises(OAuthError) as info:
        oauth.refresh_tokens(get_site("datadoghq.com"), "rt-old")
    assert info.value.status_code == 400
    assert str(info.value).endswith("(HTTP 400 from api.datadoghq.com/oauth2/v1/token)")


def test_a_deeply_nested_api_answer_is_a_package_error(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.get(f"{API}/api/v2/users", body=DEEP_ARRAY, content_type="application/json")
    with pytest.raises(DatadogPartnerError, match="not JSON"):
        api_for(make_connection()).get("/api/v2/users")


def test_a_deeply_nested_marketplace_answer_leaves_the_key_unconfirmed(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.post(MARKETPLACE, status=201, body=DEEP_OBJECT, content_type="application/json")
    connection = make_connection(api_key=None)
    outcome = create_api_key(connection)
    assert (outcome.result, outcome.reason) == (KEY_MISSING, MISSING_UNCONFIRMED)
    assert connection.status == ConnectionStatus.KEY_MISSING


def test_a_deeply_nested_validate_answer_means_cannot_tell(
    mocked_http: responses.RequestsMock,
) -> None:
    mocked_http.get(VALIDATE_URL, body=DEEP_ARRAY, content_type="application/json")
    assert DatadogClient("datadoghq.com").validate_api_key("ak-whatever") is None


def test_an_unterminated_string_of_escaped_quotes_is_refused_in_one_pass(
    mocked_http: responses.RequestsMock,
) -> None:
    """A broken answer as large as the client reads: one string opened and never closed,
    full of escaped quotes. Rescanning from every quote took hours on it (quadratic), so
    a hostile peer could hold a worker far beyond the call's deadline."""
    body = '{"access_token": "' + '\\"' * (app_settings.MAX_RESPONSE_BYTES // 2 - 10)
    mocked_http.post(TOKEN_URL, status=200, body=body, content_type="application/json")
    with pytest.raises(OAuthError) as info:
        oauth.refresh_tokens(get_site("datadoghq.com"), "rt-old")
    assert info.value.error_code == oauth.INVALID_TOKEN_RESPONSE


@pytest.mark.parametrize(
    "text",
    [
        "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH,
        '["ends in an escaped backslash \\\\", "[[[["]',
        '{"a": [1, {"b": "x"}], "c": "' + "[{" * 100 + '"}',  # brackets inside strings
        '["an escaped quote \\" then ' + "[" * 100 + '"]',
    ],
)
def test_nesting_up_to_the_limit_decodes(mocked_http: responses.RequestsMock, text: str) -> None:
    mocked_http.get(VALIDATE_URL, body=text)
    response = DatadogClient("datadoghq.com").request("GET", VALIDATE_URL)
    assert json_body(response) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
        "not json",
        "",
        "1" * 5000,  # beyond Python's integer-digits limit: a ValueError inside json
        "\xff\xfe",
    ],
)
def test_unreadable_answers_raise_the_package_error_without_the_body(
    mocked_http: responses.RequestsMock, text: str
) -> None:
    mocked_http.get(VALIDATE_URL, status=200, body=text.encode("latin-1"))
    response = DatadogClient("datadoghq.com").request("GET", VALIDATE_URL)
    with pytest.raises(UnreadableAnswerError) as info:
        json_body(response)
    assert isinstance(info.value, DatadogPartnerError)
    assert info.value.status_code == 200
    assert describe_response(response) == "HTTP 200 from api.datadoghq.com/api/v1/validate"
