"""AT-37 rotation drill: add a key -> rotate -> remove the old key -> everything still works."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from django_datadog_partner import crypto
from django_datadog_partner.connections import access_token, revoke, rotate_keys
from django_datadog_partner.connections.keyrotation import secrets_on_retired_keys
from django_datadog_partner.models import AuthorizationRequest, Connection, ConnectionStatus
from django_datadog_partner.testing import make_connection
from tests.lifecycle_support import (
    REVOKE_URL,
    TOKEN_URL,
    form,
    make_owner,
    secrets_of,
    token_json,
)

pytestmark = pytest.mark.django_db

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def make_authorization(user) -> AuthorizationRequest:
    request = AuthorizationRequest(
        state="state-" + Fernet.generate_key().decode()[:20],
        user=user,
        binding_hash="0" * 64,
        domain="datadoghq.com",
        site="https://app.datadoghq.com",
    )
    request.set_owner(user)
    request.code_verifier = "verifier-that-must-survive-rotation"
    request.save()
    return request


def raw_ciphertexts() -> list[str]:
    values = []
    for row in Connection.objects.values_list("access_token", "refresh_token", "api_key"):
        values += [secret.ciphertext for secret in row if secret is not None]
    for (verifier,) in AuthorizationRequest.objects.values_list("code_verifier"):
        assert verifier is not None
        values.append(verifier.ciphertext)
    return values


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("datadog_partner_rotate_keys", *args, stdout=out, stderr=out)
    return out.getvalue()


def test_rotation_drill(mocked_http, partner_settings):
    with partner_settings(ENCRYPTION_KEYS=[OLD]):
        connection = make_connection(expires_in=-10)
        authorization = make_authorization(make_owner("drill"))

    # 1. Add the new key first: new writes use it, old values still decrypt.
    with partner_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        newcomer = make_connection(access_token="at-newcomer")
        assert newcomer.access_token is not None
        assert crypto.is_on_newest_key(newcomer.access_token.ciphertext)
        assert secrets_of(connection)["refresh_token"] == "rt-old"
        assert len(secrets_on_retired_keys()) == 4  # 3 connection secrets + 1 PKCE verifier

        # 2. Rotate, in batches of one; running it again changes nothing (idempotent).
        output = run("--batch-size", "1")
        assert "Re-encrypted 4 secret values" in output
        assert "0 values remain on retired keys" in output
        again = run()
        assert "Re-encrypted 0 secret values" in again

    # 3. Remove the old key: every value decrypts with the new key alone; flows still work.
    with partner_settings(ENCRYPTION_KEYS=[NEW]):
        assert all(Fernet(NEW.encode()).decrypt(v.encode()) for v in raw_ciphertexts())
        assert "0 values remain on retired keys" in run("--check")
        authorization.refresh_from_db()
        assert authorization.code_verifier is not None
        assert authorization.code_verifier.reveal() == "verifier-that-must-survive-rotation"

        mocked_http.post(TOKEN_URL, json=token_json())
        mocked_http.post(REVOKE_URL, body="")
        assert access_token(Connection.objects.get(pk=connection.pk)) == "at-new"
        assert form_token(mocked_http.calls[0]) == "rt-old"
        assert revoke(Connection.objects.get(pk=connection.pk)).done
        assert Connection.objects.get(pk=newcomer.pk).status == ConnectionStatus.ACTIVE


def form_token(call) -> str:
    return form(call.request)["refresh_token"]


def test_interrupted_rotation_resumes(monkeypatch, partner_settings):
    with partner_settings(ENCRYPTION_KEYS=[OLD]):
        for _ in range(3):
            make_connection()
    real_rotate = crypto.rotate
    calls = {"n": 0}

    def dies_on_the_fourth(ciphertext: str) -> str:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_rotate(ciphertext)

    with partner_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        monkeypatch.setattr(crypto, "rotate", dies_on_the_fourth)
        with pytest.raises(KeyboardInterrupt):
            rotate_keys(batch_size=2)
        monkeypatch.setattr(crypto, "rotate", real_rotate)
        assert len(secrets_on_retired_keys()) == 6
        report = rotate_keys(batch_size=2)
        assert (report.rotated, report.already_current) == (6, 3)
        assert secrets_on_retired_keys() == []


def test_values_no_configured_key_opens_are_reported_and_left_alone(partner_settings):
    with partner_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        lost = make_connection(access_token=None, refresh_token=None)
    with partner_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        before = raw_ciphertexts()
        with pytest.raises(CommandError) as failed:
            run()
        assert raw_ciphertexts() == before
        assert f"datadog_partner.Connection {lost.pk} api_key" in str(failed.value)
        report = rotate_keys()
        assert report.unreadable == [f"datadog_partner.Connection {lost.pk} api_key"]


def test_a_token_refreshed_during_the_walk_is_never_overwritten(monkeypatch, partner_settings):
    with partner_settings(ENCRYPTION_KEYS=[OLD]):
        connection = make_connection(access_token=None, api_key=None)
    real_rotate = crypto.rotate

    def refresh_lands_meanwhile(ciphertext: str) -> str:
        row = Connection.objects.get(pk=connection.pk)
        row.refresh_token = "rt-refreshed-meanwhile"
        row.save()
        return real_rotate(ciphertext)

    with partner_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        monkeypatch.setattr(crypto, "rotate", refresh_lands_meanwhile)
        report = rotate_keys()
        assert report.changed_meanwhile == 1
        assert secrets_of(connection)["refresh_token"] == "rt-refreshed-meanwhile"
