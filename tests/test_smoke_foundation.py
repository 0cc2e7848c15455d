import pytest

from django_datadog_partner.models import Connection


@pytest.mark.django_db
def test_connection_secret_round_trip_and_raw_column_is_ciphertext(django_user_model, canaries):
    from django.db import connection as db

    user = django_user_model.objects.create(username="u")
    conn = Connection(domain="datadoghq.com", site="https://app.datadoghq.com")
    conn.set_owner(user)
    conn.api_key = canaries["api_key"]
    conn.save()
    loaded = Connection.objects.get(pk=conn.pk)
    assert loaded.api_key is not None
    assert loaded.api_key.reveal() == canaries["api_key"]
    with db.cursor() as cursor:
        cursor.execute("SELECT api_key FROM datadog_partner_connection WHERE id = %s", [conn.pk])
        (raw,) = cursor.fetchone()
    canaries.assert_absent(raw, "the raw column")
    canaries.assert_absent(repr(loaded) + str(loaded) + repr(loaded.api_key))
