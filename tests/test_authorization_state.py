"""Pending authorisations: quality, binding, bounds, expiry, single use (AT-08..AT-15, AT-19)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
import responses
from django.test import Client
from django.utils import timezone

from django_datadog_partner import failures
from django_datadog_partner.connections import (
    consume_authorization,
    purge_expired_authorization_requests,
)
from django_datadog_partner.connections.authorization import BINDING_SESSION_KEY
from django_datadog_partner.exceptions import InvalidStateError
from django_datadog_partner.models import AuthorizationRequest
from tests.connect_support import (
    ONBOARDING,
    callback,
    fake_datadog,
    make_user,
    s256,
    signed_in,
    start,
    token_form,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(alice: Any) -> Client:
    return signed_in(alice)


def test_state_is_256_bit_urlsafe_and_stored_with_its_context(client: Client, alice: Any) -> None:
    started = start(client, "us3.datadoghq.com", "acme.datadoghq.com")
    assert len(started.state) == 43  # 32 random bytes, base64url without padding
    assert set(started.state) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    row = started.row
    assert row.user == alice
    assert row.owner == alice
    assert (row.domain, row.site) == ("us3.datadoghq.com", "https://acme.datadoghq.com")
    assert row.expires_at - row.created_at == timedelta(seconds=600)
    assert row.used_at is None
    binding = client.session[BINDING_SESSION_KEY]
    assert len(binding) >= 43
    assert row.binding_hash == hashlib.sha256(binding.encode()).hexdigest()
    assert binding not in row.binding_hash
    assert row.code_verifier is not None
    assert s256(row.code_verifier.reveal()) == started.challenge


def test_states_are_unique(client: Client) -> None:
    states = {start(client).state for _ in range(25)}
    assert len(states) == 25


def test_binding_survives_login_key_rotation(client: Client, alice: Any) -> None:
    started = start(client)
    client.force_login(alice)  # cycles the session key, keeps the session data
    session = client.session
    row = consume_authorization(session, user=alice, state=started.state)
    assert row.pk == started.row.pk


def test_eleventh_outstanding_request_evicts_the_oldest(client: Client) -> None:
    states = [start(client).state for _ in range(11)]
    remaining = set(AuthorizationRequest.objects.values_list("state", flat=True))
    assert len(remaining) == 10
    assert states[0] not in remaining
    assert set(states[1:]) == remaining


def test_other_browsers_do_not_evict_each_other(alice: Any) -> None:
    first, second = signed_in(alice), signed_in(alice)
    for _ in range(10):
        start(first)
    start(second)
    assert AuthorizationRequest.objects.count() == 11


def test_anonymous_hits_create_no_rows() -> None:
    anonymous = Client()
    for _ in range(5):
        anonymous.get(f"{ONBOARDING}?domain=datadoghq.com&site=app.datadoghq.com")
        anonymous.post(
            f"{ONBOARDING}?domain=datadoghq.com&site=app.datadoghq.com", {"owner": "1:1"}
        )
    assert AuthorizationRequest.objects.count() == 0


def test_purge_removes_only_expired_rows(client: Client) -> None:
    keep, used, gone = start(client), start(client), start(client)
    AuthorizationRequest.objects.filter(state=used.state).update(used_at=timezone.now())
    AuthorizationRequest.objects.filter(state=gone.state).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert purge_expired_authorization_requests() == 1
    assert set(AuthorizationRequest.objects.values_list("state", flat=True)) == {
        keep.state,
        used.state,
    }


def test_consume_is_single_use(client: Client, alice: Any) -> None:
    started = start(client)
    session = client.session
    consume_authorization(session, user=alice, state=started.state)
    with pytest.raises(InvalidStateError) as info:
        consume_authorization(session, user=alice, state=started.state)
    assert info.value.error_code == failures.STATE_USED


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (None, failures.STATE_MISSING),
        ("", failures.STATE_MISSING),
        ("short", failures.STATE_UNKNOWN),
        ("bad state with spaces and more than sixteen", failures.STATE_UNKNOWN),
        ("A" * 43, failures.STATE_UNKNOWN),
    ],
)
def test_missing_malformed_and_unknown_states(
    client: Client, alice: Any, state: str | None, code: str
) -> None:
    with pytest.raises(InvalidStateError) as info:
        consume_authorization(client.session, user=alice, state=state)
    assert info.value.error_code == code


def test_expired_state_is_refused(client: Client, alice: Any) -> None:
    started = start(client)
    AuthorizationRequest.objects.filter(state=started.state).update(
        expires_at=timezone.now() - timedelta(microseconds=1)
    )
    with pytest.raises(InvalidStateError) as info:
        consume_authorization(client.session, user=alice, state=started.state)
    assert info.value.error_code == failures.STATE_EXPIRED


def test_another_users_attempt_leaves_the_state_to_its_owner(
    client: Client, alice: Any, django_user_model: Any
) -> None:
    started = start(client)
    mallory = make_user(django_user_model, "mallory")
    browser = signed_in(mallory)
    start(browser)  # her session holds a binding of its own
    with pytest.raises(InvalidStateError) as info:
        consume_authorization(browser.session, user=mallory, state=started.state)
    assert info.value.error_code == failures.STATE_OTHER_USER
    assert consume_authorization(client.session, user=alice, state=started.state).used_at


def test_another_user_in_the_owning_browser_burns_the_state(
    client: Client, alice: Any, django_user_model: Any
) -> None:
    """The browser owns the state, so the failed check spends it, and nobody retries it."""
    started = start(client)
    mallory = make_user(django_user_model, "mallory")
    with pytest.raises(InvalidStateError) as info:
        consume_authorization(client.session, user=mallory, state=started.state)
    assert info.value.error_code == failures.STATE_OTHER_USER
    with pytest.raises(InvalidStateError) as info:
        consume_authorization(client.session, user=alice, state=started.state)
    assert info.value.error_code == failures.STATE_USED


def test_session_change_between_onboarding_and_callback_is_refused(
    client: Client, alice: Any, mocked_http: responses.RequestsMock
) -> None:
    started = start(client)
    client.logout()
    client.force_login(alice)  # same user, but a fresh session without the binding
    response = callback(client, started.state)
    assert response["Location"] == "/datadog/error/?reason=" + failures.STATE_OTHER_BROWSER
    assert len(mocked_http.calls) == 0


def test_verifier_round_trip_and_wipe(client: Client, mocked_http: responses.RequestsMock) -> None:
    """AT-19: the token POST carries this state's verifier; it is wiped after use."""
    first = start(client)
    second = start(client)  # a second onboarding pass does not replace the first's verifier
    assert first.challenge != second.challenge
    fake_datadog(mocked_http)
    callback(client, first.state)
    assert s256(token_form(mocked_http)["code_verifier"]) == first.challenge
    assert first.row.code_verifier is None
    assert second.row.code_verifier is not None
    assert s256(second.row.code_verifier.reveal()) == second.challenge
