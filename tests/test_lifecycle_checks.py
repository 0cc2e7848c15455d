"""System checks W020-W022: lifecycle schedules, open alarms, disconnects never confirmed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from django_datadog_partner.checks import check_lifecycle
from django_datadog_partner.connections import raise_alarm
from django_datadog_partner.models import Alarm, Connection, ConnectionStatus
from django_datadog_partner.schedules import ensure_schedules
from django_datadog_partner.testing import make_connection

pytestmark = pytest.mark.django_db


def ids() -> list[str]:
    return [message.id for message in check_lifecycle(databases=["default"]) if message.id]


def test_all_quiet_once_schedules_exist():
    ensure_schedules()
    assert ids() == []


def test_w020_missing_or_outdated_lifecycle_schedule():
    assert ids() == ["datadog_partner.W020"]
    ensure_schedules()
    Schedule.objects.filter(name="datadog_partner: health checks").update(func="x.y")
    (message,) = check_lifecycle(databases=["default"])
    assert message.id == "datadog_partner.W020" and "health checks" in message.msg
    assert "datadog_partner_schedule" in (message.hint or "")


def test_w020_ignores_the_sweeper_which_the_telemetry_checks_cover():
    ensure_schedules()
    Schedule.objects.filter(func__endswith=".sweep_outbox").delete()
    assert ids() == []


def test_w021_open_alarm_until_cleared():
    ensure_schedules()
    raise_alarm("invalid_client", "Datadog refused our credentials.")
    assert ids() == ["datadog_partner.W021"]
    Alarm.objects.update(cleared_at=timezone.now())
    assert ids() == []


def test_w022_connection_revoking_for_more_than_a_day():
    ensure_schedules()
    connection = make_connection(status=ConnectionStatus.REVOKING)
    assert ids() == []
    Connection.objects.filter(pk=connection.pk).update(
        status_changed_at=timezone.now() - timedelta(hours=25)
    )
    assert ids() == ["datadog_partner.W022"]


def test_checks_without_the_database_tag_do_nothing():
    assert check_lifecycle(databases=None) == []


def test_runs_through_manage_py_check_database(capsys):
    call_command("check", "--database", "default", "--tag", "database")
    assert "datadog_partner.W020" in capsys.readouterr().err
