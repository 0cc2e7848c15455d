"""Secrets at rest: encrypted columns, fail-closed decryption, redaction (AT-36, AT-38)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core import serializers
from django.db import connection as db

from django_datadog_partner import crypto
from django_datadog_partner.exceptions import ConfigurationError, CredentialsUnreadableError
from django_datadog_partner.fields import Secret
from django_datadog_partner.models import AuthorizationRequest, Connection

KEY = crypto.current_keys()[0]


def raw_column(table: str, column: str, pk: int) -> str:
    with db.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.fixture
def connection(django_user_model, canaries) -> Connection:
    user = django_user_model.objects.create(username="owner")
    conn = Connection(domain="datadoghq.eu", site="https://app.datadoghq.eu")
    conn.set_owner(user)
    conn.access_token = canaries["access_token"]
    conn.refresh_token = canaries["refresh_token"]
    conn.api_key = canaries["api_key"]
    conn.save()
    return conn


@pytest.mark.django_db
def test_columns_hold_ciphertext_only(connection, canaries):
    for column in ("access_token", "refresh_token", "api_key"):
        raw = raw_column("datadog_partner_connection", column, connection.pk)
        canaries.assert_absent(raw, f"column {column}")
        assert raw.startswith("gAAAA")  # a Fernet token


@pytest.mark.django_db
def test_values_decrypt_only_on_request(connection, canaries):
    loaded = Connection.objects.get(pk=connection.pk)
    assert isinstance(loaded.refresh_token, Secret)
    assert loaded.refresh_token.reveal() == canaries["refresh_token"]
    text = repr(loaded) + str(loaded) + repr(loaded.refresh_token) + str(vars(loaded))
    canaries.assert_absent(text, "repr/str")


@pytest.mark.django_db
def test_plaintext_is_encrypted_on_assignment_even_before_saving(canaries):
    conn = Connection(domain="datadoghq.com")
    conn.access_token = canaries["access_token"]
    canaries.assert_absent(str(vars(conn)), "an unsaved instance")


@pytest.mark.django_db
def test_none_wipes_and_empty_string_is_no_secret(connection):
    connection.api_key = None
    connection.access_token = ""
    connection.save()
    loaded = Connection.objects.get(pk=connection.pk)
    assert loaded.api_key is None and loaded.access_token is None
    assert raw_column("datadog_partner_connection", "api_key", connection.pk) is None


@pytest.mark.django_db
def test_wrong_key_fails_closed(connection, partner_settings):
    with partner_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        loaded = Connection.objects.get(pk=connection.pk)  # loading never decrypts
        assert loaded.api_key is not None
        with pytest.raises(CredentialsUnreadableError) as excinfo:
            loaded.api_key.reveal()
    assert "gAAAA" not in str(excinfo.value)


def test_malformed_key_is_a_configuration_error(partner_settings):
    with (
        partner_settings(ENCRYPTION_KEYS=["not-a-key"]),
        pytest.raises(ConfigurationError, match="not a Fernet key"),
    ):
        crypto.encrypt("x")


@pytest.mark.django_db
def test_rotation_moves_values_to_the_newest_key(connection, canaries, partner_settings):
    new = Fernet.generate_key().decode()
    with partner_settings(ENCRYPTION_KEYS=[new, KEY]):
        ciphertext = raw_column("datadog_partner_connection", "api_key", connection.pk)
        assert not crypto.is_on_newest_key(ciphertext)
        rotated = crypto.rotate(ciphertext)
        assert crypto.is_on_newest_key(rotated)
    with partner_settings(ENCRYPTION_KEYS=[new]):
        assert crypto.decrypt(rotated) == canaries["api_key"]


@pytest.mark.django_db
def test_serializers_never_see_plaintext(connection, canaries):
    dumped = serializers.serialize("json", Connection.objects.all())
    canaries.assert_absent(dumped, "dumpdata output")
    assert raw_column("datadog_partner_connection", "api_key", connection.pk) in dumped


@pytest.mark.django_db
def test_deferred_secret_loads_on_access(connection, canaries):
    loaded = Connection.objects.only("id", "domain").get(pk=connection.pk)
    assert loaded.api_key is not None
    assert loaded.api_key.reveal() == canaries["api_key"]


@pytest.mark.django_db
def test_authorization_request_verifier_is_encrypted(django_user_model):
    user = django_user_model.objects.create(username="u")
    request = AuthorizationRequest(
        state="s" * 43, user=user, binding_hash="b", domain="datadoghq.com", site="https://x"
    )
    request.set_owner(user)
    request.code_verifier = "verifier-canary-0123456789012345678901234567"
    request.save()
    assert request.expires_at is not None
    assert (request.expires_at - request.created_at).total_seconds() == 600
    raw = raw_column("datadog_partner_authorizationrequest", "code_verifier", request.pk)
    assert "verifier-canary" not in raw
    assert "verifier-canary" not in repr(request) + str(request)


def test_helpers():
    assert crypto.last4("0123456789abcdef0123456789abcdef") == "cdef"
    assert crypto.last4("short") == ""
    assert crypto.fingerprint("a") == crypto.fingerprint("a") != crypto.fingerprint("b")
    Fernet(crypto.generate_key())
