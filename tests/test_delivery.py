"""Delivery: claim with a lease, route, send with the API key, classify (issue 5 item 3)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from django_datadog_partner import delivery, leases, payloads, signals, tracking
from django_datadog_partner.models import (
    Alarm,
    ConnectionStatus,
    OutboxEvent,
    OutboxKind,
    OutboxStatus,
)
from django_datadog_partner.outbox import cancel_pending_for_connection, purge, requeue
from django_datadog_partner.testing import make_connection
from tests.outbox_support import key_of, statuses
from tests.test_tracking import save_then_fail
from tests.testapp.models import Order, Organization

pytestmark = pytest.mark.django_db


def make_due() -> None:
    OutboxEvent.objects.filter(status=OutboxStatus.PENDING).update(next_attempt_at=timezone.now())


def test_commit_sends_exactly_once_with_the_api_key(org, conn, intake, canaries, debug_logs):
    sent: list[Any] = []
    signals.event_sent.connect(lambda **kw: sent.append(kw), weak=False, dispatch_uid="t-sent")
    try:
        with transaction.atomic():
            order = Order.objects.create(organization=org, number="A-1", secret_note="hush")
        summary = delivery.drain()
        again = delivery.drain()
    finally:
        signals.event_sent.disconnect(dispatch_uid="t-sent")
    assert str(summary) == "delivered: 1" and str(again) == "nothing due"
    (arrival,) = intake.arrivals
    row = OutboxEvent.objects.get()
    assert arrival.request.url == "https://api.datadoghq.com/api/v1/events"
    assert arrival.api_key == key_of(conn) and "Authorization" not in arrival.request.headers
    assert arrival.body["title"] == "Order created: A-1"
    assert arrival.body["text"].endswith(f"\n\noutbox_id:{row.pk}")
    assert arrival.outbox_ids() == [row.pk]
    assert not any("outbox" in tag for tag in arrival.body["tags"])
    assert "hush" not in json.dumps(arrival.body) and "secret_note" not in arrival.body["text"]
    assert arrival.body["aggregation_key"] == f"testapp.order:{order.pk}"
    assert (row.status, row.attempts, row.connection) == ("delivered", 1, conn)
    assert [kw["outbox"].pk for kw in sent] == [row.pk] and sent[0]["connection"] == conn
    conn.refresh_from_db()
    assert conn.last_success_at is not None
    canaries.assert_absent(debug_logs.text, "logs")
    assert key_of(conn) not in debug_logs.text


def test_rolled_back_saves_never_reach_datadog(org, conn, intake):
    with pytest.raises(RuntimeError):
        save_then_fail(org, "gone")
    assert str(delivery.drain()) == "nothing due" and intake.arrivals == []


def test_owner_without_connection_closes_the_row(org, intake):
    Order.objects.create(organization=org, number="1")
    assert str(delivery.drain()) == "no_connection: 1"
    assert list(statuses().values()) == ["no_connection"] and intake.arrivals == []


def test_every_connection_of_the_owner_gets_its_own_row(org, conn, intake):
    eu = make_connection(org, domain="datadoghq.eu")
    broken = make_connection(org, status=ConnectionStatus.NEEDS_RECONNECT)
    make_connection(org, status=ConnectionStatus.REVOKED)
    Order.objects.create(organization=org, number="1")
    delivery.drain()
    rows = {row.connection_id: row for row in OutboxEvent.objects.all()}
    assert set(rows) == {conn.pk, eu.pk, broken.pk}
    assert [rows[c.pk].status for c in (conn, eu, broken)] == ["delivered", "delivered", "parked"]
    by_key = {a.api_key: (a.domain, a.outbox_ids()) for a in intake.arrivals}
    assert by_key == {
        key_of(conn): ("datadoghq.com", [rows[conn.pk].pk]),
        key_of(eu): ("datadoghq.eu", [rows[eu.pk].pk]),
    }


def test_one_attempt_per_row_per_run_even_when_the_retry_is_due_at_once(
    org, conn, intake, partner_settings
):
    """Full jitter can draw a zero delay; the run must not send the row again at once."""
    partner_settings(BACKOFF_BASE=0)
    intake.respond = lambda arrival: (503, {}, "")
    tracking.send_event(org, title="t", text="x")
    delivery.drain()
    row = OutboxEvent.objects.get()
    assert (row.status, row.attempts) == ("pending", 1)
    assert len(intake.arrivals) == 1
    delivery.drain()  # the next run takes the retry
    assert len(intake.arrivals) == 2


# --- classification --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome", "code", "alarm"),
    [
        (200, "delivered", "", False),
        (202, "delivered", "", False),
        (400, "dead", "http_400", False),
        (422, "dead", "http_422", False),
        (401, "dead", "http_401", True),
        (404, "dead", "http_404", True),
        (405, "dead", "http_405", True),
        (408, "pending", "http_408", False),
        (425, "pending", "http_425", False),
        (429, "pending", "http_429", False),
        (500, "pending", "http_500", False),
        (502, "pending", "http_502", False),
        (503, "pending", "http_503", False),
        (504, "pending", "http_504", False),
    ],
)
def test_classification_table(org, conn, intake, status, outcome, code, alarm):
    intake.respond = lambda arrival: (status, {"Content-Type": "text/html"}, "<html>oops</html>")
    tracking.send_event(org, title="t", text="x")
    delivery.drain()
    row = OutboxEvent.objects.get()
    assert (row.status, row.last_error_code) == (outcome, code)
    assert len(intake.arrivals) == 1  # AT-55: one request per attempt, no hidden retries
    assert Alarm.objects.filter(code=f"intake_{code}").exists() is alarm
    if outcome == "pending":
        assert row.attempts == 1 and row.next_attempt_at > timezone.now() - timedelta(seconds=1)
        assert row.lease_token == "" and row.lease_until is None


@pytest.mark.parametrize(
    "error", [requests.ConnectTimeout(), requests.ReadTimeout(), requests.ConnectionError()]
)
def test_timeouts_and_resets_are_retried(org, conn, mocked_http, error):
    mocked_http.add(responses.POST, "https://api.datadoghq.com/api/v1/events", body=error)
    tracking.send_event(org, title="t", text="x")
    delivery.drain()
    row = OutboxEvent.objects.get()
    assert (row.status, row.last_error_code, row.attempts) == ("pending", "network", 1)
    assert len(mocked_http.calls) == 1


def test_a_redirect_is_never_followed(org, conn, mocked_http):
    mocked_http.add(
        responses.POST, "https://api.datadoghq.com/api/v1/events", status=302,
        headers={"Location": "https://evil.example/steal"},
    )  # fmt: skip
    tracking.send_event(org, title="t", text="x")
    delivery.drain()
    row = OutboxEvent.objects.get()
    assert (row.status, row.last_error_code) == ("dead", "transport_refused")
    assert len(mocked_http.calls) == 1 and Alarm.objects.filter(code="intake_transport_refused")


def test_one_request_per_attempt_over_several_attempts(org, conn, intake):
    intake.respond = lambda arrival: 503
    tracking.send_event(org, title="t", text="x")
    for attempt in range(1, 4):
        delivery.drain()
        assert len(intake.arrivals) == attempt
        make_due()
    assert OutboxEvent.objects.get().attempts == 3
    bodies = {a.request.body for a in intake.arrivals}
    assert len(bodies) == 1  # AT-48: byte-identical retries


def test_403_with_a_refused_key_parks_the_connection_and_its_rows(org, conn, intake):
    intake.respond, intake.validate_status = (lambda arrival: 403), 403
    tracking.send_event(org, title="t1", text="x")
    tracking.send_event(conn, title="t2", text="x")
    later = tracking.send_event(conn, title="later", text="x")
    assert later is not None
    OutboxEvent.objects.filter(pk=later.pk).update(next_attempt_at=timezone.now() + timedelta(1))
    delivery.drain()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.API_KEY_REJECTED and conn.last_error_code == "http_403"
    assert set(statuses().values()) == {"parked"}
    assert intake.validations == [key_of(conn)]  # validated once per run, not per row


def test_403_with_a_valid_key_is_retried(org, conn, intake):
    intake.respond = lambda arrival: 403
    tracking.send_event(org, title="t", text="x")
    delivery.drain()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.ACTIVE
    assert OutboxEvent.objects.get().status == "pending" and len(intake.validations) == 1


def test_413_shrinks_an_event_once(org, conn, intake):
    intake.respond = lambda a: 413 if len(a.body["text"]) > 1100 else 202
    tracking.send_event(org, title="t" * 150, text="x" * 3000)
    delivery.drain()
    row = OutboxEvent.objects.get()
    assert row.status == "delivered" and len(row.payload["text"]) == 1000
    mark = len(f"\n\noutbox_id:{row.pk}")  # the text as sent ends with the row's id
    assert [len(a.body["text"]) for a in intake.arrivals] == [3000 + mark, 1000 + mark]


def test_413_after_shrinking_is_dead(org, conn, intake):
    intake.respond = lambda arrival: 413
    tracking.send_event(org, title="t", text="x")
    delivery.drain()
    assert OutboxEvent.objects.get().status == "dead" and len(intake.arrivals) == 2


# --- age, leases, lifecycle -------------------------------------------------------------------


def test_old_events_and_metric_points_expire_unsent(org, conn, intake):
    failed: list[str] = []
    signals.event_failed.connect(
        lambda **kw: failed.append(kw["reason"]), weak=False, dispatch_uid="t-failed"
    )
    try:
        tracking.send_event(org, title="t", text="x", when=timezone.now() - timedelta(hours=17.5))
        tracking.send_metric(org, "m.x", 1, when=timezone.now() - timedelta(minutes=55))
        tracking.send_log(org, "fresh")
        delivery.drain()
    finally:
        signals.event_failed.disconnect(dispatch_uid="t-failed")
    kinds = dict(OutboxEvent.objects.values_list("kind", "status"))
    assert kinds == {"event": "expired", "metric": "expired", "log": "delivered"}
    assert failed == ["expired", "expired"] and [a.kind for a in intake.arrivals] == ["logs"]


def test_a_retry_past_the_horizon_expires_instead(org, conn, intake, monkeypatch):
    from django_datadog_partner.delivery import outcomes

    monkeypatch.setattr(outcomes, "backoff_delay", lambda attempts: 30.0)
    intake.respond = lambda arrival: 503
    almost_too_old = timezone.now() - timedelta(hours=17) + timedelta(seconds=10)
    tracking.send_event(org, title="t", text="x", when=almost_too_old)
    tracking.send_event(org, title="u", text="x", when=timezone.now() - timedelta(hours=1))
    delivery.drain()
    assert sorted(statuses().values()) == ["expired", "pending"]


def test_date_happened_is_the_event_time(org, conn, intake):
    when = timezone.now() - timedelta(hours=2)
    tracking.send_event(org, title="t", text="x", when=when)
    delivery.drain()
    assert intake.arrivals[0].body["date_happened"] == int(when.timestamp())


def test_claims_are_exclusive_and_stale_leases_come_back(org, conn, settings):
    for n in range(5):
        tracking.send_event(org, title=str(n), text="x")
    token_a, rows_a = delivery.claim(3)
    token_b, rows_b = delivery.claim(10)
    assert len(rows_a) == 3 and len(rows_b) == 2 and token_a != token_b
    assert not {r.pk for r in rows_a} & {r.pk for r in rows_b}
    assert delivery.claim(10)[1] == []
    OutboxEvent.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    assert len(delivery.claim(10)[1]) == 5


def test_a_claimed_row_holds_the_values_the_orm_reads_back(org, conn):
    when = timezone.now().replace(microsecond=123457) - timedelta(days=400)
    tracking.send_log(org, "m", when=when)
    tracking.send_event(org, title="t", text="x", when=when.replace(microsecond=0))
    _token, rows = delivery.claim(10)
    meta: Any = OutboxEvent._meta
    fields = [name for name in delivery.run.CLAIMED_FIELDS if name not in ("lease_until",)]
    for row in rows:
        stored = OutboxEvent.objects.get(pk=row.pk)
        for name in fields:
            attname = meta.get_field(name).attname
            claimed, read = getattr(row, attname), getattr(stored, attname)
            assert (claimed, type(claimed)) == (read, type(read)), name
            if name in ("event_time", "next_attempt_at"):
                assert claimed.utcoffset() == timedelta(0) and claimed.tzinfo == read.tzinfo
    assert sorted(row.event_time for row in rows) == [when.replace(microsecond=0), when]


@pytest.mark.parametrize(
    "stored",
    [
        '{"a": [1, 2.5, null], "b": "\\u00e9"}',
        ' {"a": 1} ',
        '"text"',
        '{"a": 1} and more',
        "not json",
        "",
        None,
    ],
)
def test_a_claimed_payload_decodes_as_the_json_field_would(stored):
    field: Any = OutboxEvent._meta.get_field("payload")
    expected = field.from_db_value(stored, None, connection)
    decoded = leases._json_loader(field)(stored, None, connection)
    assert (decoded, type(decoded)) == (expected, type(expected))


@pytest.mark.parametrize("use_tz", [True, False])
@pytest.mark.parametrize(
    "stored",
    [
        "'2026-12-02 01:02:03.664600'",
        "'2026-12-02 01:02:03'",
        "'2026-12-02 01:02:03.664600+02:00'",
        "'2026-12-02T01:02:03'",
        "'2026-12-02'",
        "'20261202'",
        "date('now')",
        "''",
        "'garbage'",
        "1764637323",
    ],
)
def test_a_claimed_time_reads_as_the_orm_reads_what_is_stored(stored, use_tz, org, settings):
    """Whatever a data migration or raw SQL left in the column: on SQLite a claimed time
    is parsed from its text, and must come out as Django's converters give it."""
    if connection.vendor != "sqlite":
        pytest.skip("only SQLite keeps a time as text, whatever it is")
    settings.USE_TZ = use_tz
    tracking.send_event(org, title="t", text="x")
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE datadog_partner_outboxevent SET event_time = {stored}")
    read = OutboxEvent.objects.get().event_time
    now = timezone.now()
    [row] = leases.lease("t", OutboxEvent.objects.all(), 1, now, now, ["event_time"])
    assert (row.event_time, type(row.event_time)) == (read, type(read))
    assert getattr(row.event_time, "tzinfo", None) == getattr(read, "tzinfo", None)


def test_a_claim_through_its_compiled_due_rows_leases_what_the_queryset_would(org, conn):
    """The compiled template of the due rows takes each claim's own times: rows retried
    since the run started are left alone, rows due later are not taken."""
    from django_datadog_partner.delivery.run import _due

    for n in range(6):
        tracking.send_event(org, title=str(n), text="x")
    now = timezone.now()
    ids = sorted(OutboxEvent.objects.values_list("pk", flat=True))
    OutboxEvent.objects.filter(pk=ids[0]).update(attempts=1, next_attempt_at=now)  # retried
    OutboxEvent.objects.filter(pk=ids[1]).update(next_attempt_at=now + timedelta(hours=1))
    until = now + timedelta(minutes=2)
    for token, since in (("before", now - timedelta(seconds=5)), ("after", now + timedelta(1))):
        expected = sorted(_due(now, since).values_list("pk", flat=True))
        rows = leases.lease(token, leases.Due(_due, now, since), 10, now, until, ["kind"])
        assert [row.pk for row in rows] == expected
        OutboxEvent.objects.update(lease_until=None, lease_token="")
    assert expected == [ids[0], *ids[2:]]  # retried before the second run started: taken
    rows = leases.lease("later", leases.Due(_due, now + timedelta(hours=2)), 10, now, until, [])
    assert sorted(row.pk for row in rows) == ids  # no run start: the retried row too


def test_compiled_due_rows_take_the_same_parameters_as_their_queryset():
    """Each claim's times and limit are its own, whatever the template was compiled with."""
    from django_datadog_partner.delivery.run import _due

    now = timezone.now()
    for since in (None, now - timedelta(seconds=30), now):
        for limit in (200, 3217):
            picked = leases._picked(connection.alias, leases.Due(_due, now, since), limit)
            assert picked == leases._compile(connection, _due(now, since), limit)


def _by_day(now, since):
    return OutboxEvent.objects.filter(attempts__lte=now.day)


def _tomorrow(now, since):
    return OutboxEvent.objects.filter(next_attempt_at__lte=now + timedelta(days=1))


def _before_since(now, since):
    return OutboxEvent.objects.filter(next_attempt_at__gt=since - timedelta(days=1))


@pytest.mark.parametrize("build", [_by_day, _tomorrow, _before_since])
def test_due_rows_whose_sql_depends_on_the_time_are_refused(build):
    """A parameter derived from a time (a day later, a day earlier) is neither slot: such
    rows are refused rather than given the wrong time."""
    now = timezone.now()
    with pytest.raises(ImproperlyConfigured, match="one statement"):
        leases._picked(connection.alias, leases.Due(build, now, now), 3)


def test_a_run_whose_lease_was_taken_over_records_nothing(org, conn, intake):
    tracking.send_event(org, title="t", text="x")
    token, rows = delivery.claim(10)
    OutboxEvent.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    delivery.drain()  # another worker takes over the stale lease and delivers
    delivery.deliver(token, rows, delivery.Summary())  # the slow first worker finishes
    row = OutboxEvent.objects.get()
    assert row.status == "delivered" and row.attempts == 1 and len(intake.arrivals) == 2


def test_rows_that_find_no_descriptor_wait_without_spending_an_attempt(
    org, conn, intake, monkeypatch, caplog
):
    from django_datadog_partner.delivery import transmit
    from django_datadog_partner.exceptions import OutOfDescriptorsError
    from django_datadog_partner.models import SiteBreaker

    def no_descriptor(*args, **kwargs):
        raise OutOfDescriptorsError("This worker process has no file descriptor left.")

    monkeypatch.setattr(transmit.DatadogClient, "request", no_descriptor)
    for n in range(3):
        tracking.send_event(conn, title=f"e{n}", text="x")
    started = timezone.now()
    assert str(delivery.drain()) == "no_descriptors: 3"
    rows = OutboxEvent.objects.all()
    assert {(row.status, row.attempts) for row in rows} == {("pending", 0)}
    assert all(row.next_attempt_at > started for row in rows)
    assert not SiteBreaker.objects.filter(failures__gt=0).exists()
    said = [r.getMessage() for r in caplog.records if "descriptor" in r.getMessage()]
    assert said == ["This worker process has no file descriptor left."]


def test_a_project_with_naive_times_delivers(org, conn, intake, settings):
    """``USE_TZ = False``: the statements compiled once took aware stand-in times, which
    SQLite refuses then, so no claim could run."""
    settings.USE_TZ = False
    for n in range(3):
        tracking.send_event(conn, title=f"e{n}", text="x")
    assert str(delivery.drain()) == "delivered: 3"


def test_no_request_starts_when_the_lease_would_end_first(org, conn, intake, partner_settings):
    partner_settings(LEASE_SECONDS=5)
    tracking.send_event(org, title="t", text="x")
    assert str(delivery.drain()) == "released: 1"
    row = OutboxEvent.objects.get()
    assert (row.status, row.attempts, row.lease_token) == ("pending", 0, "")
    assert intake.arrivals == []


def test_revoked_connection_cancels_and_revoke_helper_cancels(org, conn, intake):
    tracking.send_event(conn, title="t", text="x")
    tracking.send_event(conn, title="u", text="x")
    assert cancel_pending_for_connection(conn) == 2
    tracking.send_event(conn, title="v", text="x")
    conn.status = ConnectionStatus.REVOKED
    conn.save()
    delivery.drain()
    assert set(statuses().values()) == {"cancelled"} and intake.arrivals == []


def test_unreadable_key_marks_the_connection_and_parks(org, conn, intake):
    from cryptography.fernet import Fernet

    from django_datadog_partner.fields import Secret
    from django_datadog_partner.models import Connection

    lost_key = Fernet(Fernet.generate_key())
    unreadable = Secret(lost_key.encrypt(b"a-key-we-cannot-read").decode())
    Connection.objects.filter(pk=conn.pk).update(api_key=unreadable)
    tracking.send_event(conn, title="t", text="x")
    delivery.drain()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.CREDENTIALS_UNREADABLE
    assert list(statuses().values()) == ["parked"] and intake.arrivals == []


def test_pre_event_send_runs_once_and_its_result_is_what_every_attempt_sends(org, conn, intake):
    calls: list[int] = []

    def enrich(outbox: OutboxEvent, payload: dict[str, Any], **kwargs: Any) -> None:
        calls.append(outbox.pk)
        payload["tags"].append("enriched:yes")

    signals.pre_event_send.connect(enrich, weak=False, dispatch_uid="t-enrich")
    intake.respond = lambda arrival: 503
    try:
        tracking.send_event(org, title="t", text="x")
        delivery.drain()
        make_due()
        intake.respond = lambda arrival: 202
        delivery.drain()
    finally:
        signals.pre_event_send.disconnect(dispatch_uid="t-enrich")
    assert len(calls) == 1 and OutboxEvent.objects.get().status == "delivered"
    first, second = (a.request.body for a in intake.arrivals)
    assert first == second and b"enriched:yes" in first


def test_requeue_sends_dead_rows_once_more(org, conn, intake):
    intake.respond = lambda arrival: 400
    tracking.send_event(org, title="t", text="x")
    delivery.drain()
    intake.respond = lambda arrival: 202
    assert requeue(OutboxEvent.objects.all()) == 1
    assert requeue(OutboxEvent.objects.all()) == 0  # pending rows are left alone
    delivery.drain()
    assert list(statuses().values()) == ["delivered"] and len(intake.arrivals) == 2


def test_purge_deletes_only_old_finished_rows(org, conn, intake):
    for n in range(3):
        tracking.send_event(org, title=str(n), text="x")
    delivery.drain()
    tracking.send_event(org, title="pending", text="x")
    OutboxEvent.objects.update(created_at=timezone.now() - timedelta(days=10))
    assert purge(timedelta(days=30)) == 0
    assert purge(timedelta(days=7)) == 3
    assert list(statuses().values()) == ["pending"]


def test_metric_and_log_kinds(org, conn, intake):
    tracking.send_metric(org, "shop.orders", 2, metric_type="count", interval=60, unit="order")
    tracking.send_log(org, "order paid", attributes={"order_id": "7"}, hostname="web-1")
    delivery.drain()
    by_kind = {a.kind: a for a in intake.arrivals}
    assert by_kind["series"].request.url == "https://api.datadoghq.com/api/v2/series"
    assert by_kind["logs"].request.url == "https://http-intake.logs.datadoghq.com/api/v2/logs"
    assert by_kind["logs"].request.headers["Content-Encoding"] == "gzip"
    assert by_kind["series"].request.headers["Content-Encoding"] == "gzip"
    (series,) = by_kind["series"].items()
    assert "tags" in series and not any(t.startswith("outbox_id") for t in series["tags"])
    (log,) = by_kind["logs"].items()
    log_row = OutboxEvent.objects.get(kind=OutboxKind.LOG)
    assert log["outbox_id"] == log_row.pk and "ddtags" not in log and log["hostname"] == "web-1"


def test_failures_never_leak_the_api_key(org, intake, canaries, debug_logs):
    conn = make_connection(org, api_key=canaries["api_key"])
    replies = iter([503, 429, 403, 400])
    intake.respond = lambda arrival: next(replies)
    intake.validate_status = 403
    for _ in range(4):
        tracking.send_event(org, title="t", text="x")
        delivery.drain()
        make_due()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.API_KEY_REJECTED
    recorded: list[object] = [conn.status_reason, *Alarm.objects.values_list("message", flat=True)]
    recorded += OutboxEvent.objects.values_list("last_error", "last_error_code", "payload")
    canaries.assert_absent(debug_logs.text, "logs")
    canaries.assert_absent(repr(recorded), "outbox rows, connection, alarms")
    from django_datadog_partner.delivery import transmit

    target = transmit.Target(conn.pk, conn.domain, canaries["api_key"])  # type: ignore[arg-type]
    canaries.assert_absent(repr(target) + str(target), "Target repr")


@pytest.fixture
def partitioned_outbox():
    """The outbox as a table partitioned by ``created_at`` (as a purge by DETACH/DROP
    would have it), in the test's transaction: every partition numbers its tuples from
    the start. Claims look at the table once per process: forgotten around it."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE datadog_partner_outboxevent RENAME TO plain_outbox")
        cursor.execute(
            "CREATE TABLE datadog_partner_outboxevent (LIKE plain_outbox INCLUDING DEFAULTS)"
            f" PARTITION BY RANGE ({quote('created_at')})"
        )
        for name, bounds in (
            ("old", "(MINVALUE) TO ('2000-01-01')"),
            ("new", "('2000-01-01') TO (MAXVALUE)"),
        ):
            cursor.execute(
                f"CREATE TABLE outbox_{name} PARTITION OF datadog_partner_outboxevent"
                f" FOR VALUES FROM {bounds}"
            )
        cursor.execute("INSERT INTO datadog_partner_outboxevent SELECT * FROM plain_outbox")
    leases.forget()
    yield
    leases.forget()


def test_a_claim_on_a_partitioned_outbox_leases_only_the_rows_it_picked(org, request):
    """A tuple id names a row in each partition: matched by it alone, a claim of one row
    leased a row of the other partition too, one still in its backoff."""
    if connection.vendor != "postgresql":
        pytest.skip("partitions are PostgreSQL's")
    for title in ("due", "in backoff"):
        tracking.send_event(org, title=title, text="x")
    due, later = OutboxEvent.objects.order_by("pk")
    now = timezone.now()
    OutboxEvent.objects.filter(pk=due.pk).update(created_at=now - timedelta(days=365 * 40))
    OutboxEvent.objects.filter(pk=later.pk).update(next_attempt_at=now + timedelta(hours=1))
    request.getfixturevalue("partitioned_outbox")
    _, rows = delivery.claim(1)
    assert [row.pk for row in rows] == [due.pk]
    assert OutboxEvent.objects.get(pk=later.pk).lease_token == ""


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_share_a_row():
    """Two workers claiming at the same time (real threads, own connections)."""
    import threading

    from django.db import connections

    owner = Organization.objects.create(name="o")
    for n in range(300):
        tracking.send_event(owner, title=str(n), text="x")
    claimed: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def worker(slot: int) -> None:
        start.wait()
        try:
            while True:
                _, rows = delivery.claim(25)
                if not rows:
                    return
                claimed[slot] += [row.pk for row in rows]
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == sorted(statuses())


def test_the_outbox_mark_keeps_datadogs_text_limit_and_markdown():
    plain = payloads.mark_text("x" * 5000, 42)
    assert len(plain) == payloads.EVENT_TEXT_LIMIT and plain.endswith("x\n\noutbox_id:42")
    markdown = payloads.mark_text("%%% \n**paid** \n %%%", 42)
    assert markdown == "%%% \n**paid** \n\noutbox_id:42\n %%%"
    assert payloads.as_sent("metric", {"metric": "m"}, 42) == {"metric": "m"}
