"""Choosing what is shipped: the registry, the receivers, the outbox row, the kick."""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.core import serializers
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_datadog_partner import outbox, payloads, tracking
from django_datadog_partner.delivery import kick
from django_datadog_partner.models import OutboxEvent, OutboxKind
from django_datadog_partner.payloads import Change, default_event
from django_datadog_partner.testing import make_connection
from tests.testapp.models import Order, Organization, Untracked, Workspace

pytestmark = pytest.mark.django_db


def save_then_fail(org: Organization, number: str) -> None:
    with transaction.atomic():
        Order.objects.create(organization=org, number=number)
        raise RuntimeError("the host rolls back")


@pytest.fixture
def tracked_workspace() -> Any:
    """Untracked temporarily tracked, owned by a Workspace (UUID primary key)."""
    workspace = Workspace.objects.create(name="ws")
    tracking.register(Untracked, owner=lambda obj: workspace, on=("created", "deleted"))
    yield workspace
    tracking.registry.unregister(Untracked)


def test_untracked_model_has_no_receiver_at_all() -> None:
    assert not post_save.has_listeners(Untracked)
    assert not post_delete.has_listeners(Untracked)
    assert post_save.has_listeners(Order)
    assert tracking.registry.models() == [Order]


def test_commit_writes_exactly_one_row_and_one_kick(org, django_capture_on_commit_callbacks, kicks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        order = Order.objects.create(organization=org, number="A-1")
    assert len(callbacks) == 1
    row = OutboxEvent.objects.get()
    assert (row.kind, row.source, row.action, row.status) == ("event", "testapp.order", "created",
                                                              "pending")  # fmt: skip
    assert row.owner == org and row.connection is None
    assert row.payload["aggregation_key"] == f"testapp.order:{order.pk}"
    assert kicks == [1]


def test_rollback_writes_nothing_and_kicks_nothing(org, django_capture_on_commit_callbacks, kicks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        save_then_fail(org, "A-1")
    assert not OutboxEvent.objects.exists()
    assert callbacks == [] and kicks == []


def test_savepoint_rollback_keeps_the_outer_rows_kick(org, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        with pytest.raises(RuntimeError):
            save_then_fail(org, "gone")
        Order.objects.create(organization=org, number="kept")
    assert [row.payload["title"] for row in OutboxEvent.objects.all()] == ["Order created: kept"]
    assert [cb for cb in callbacks if cb is kick._kick] == [kick._kick]


def test_a_kick_registered_before_a_rolled_back_savepoint_stays(
    org, django_capture_on_commit_callbacks, kicks
):
    """The outer save's kick is not the inner block's to discard; saves in released
    savepoints add none."""
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        Order.objects.create(organization=org, number="outer")
        with transaction.atomic():
            Order.objects.create(organization=org, number="released")
        with pytest.raises(RuntimeError):
            save_then_fail(org, "gone")
    titles = {row.payload["title"] for row in OutboxEvent.objects.all()}
    assert titles == {"Order created: outer", "Order created: released"}
    assert callbacks == [kick._kick] and kicks == [1]


def test_many_saves_in_one_transaction_register_one_kick(org, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        for n in range(20):
            Order.objects.create(organization=org, number=str(n))
    assert OutboxEvent.objects.count() == 20
    assert callbacks == [kick._kick]


def test_kicks_can_be_turned_off(org, django_capture_on_commit_callbacks, kicks, partner_settings):
    partner_settings(KICK_ON_COMMIT=False)
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        Order.objects.create(organization=org, number="1")
    assert OutboxEvent.objects.count() == 1
    assert callbacks == [] and kicks == []


def test_raw_saves_from_fixtures_send_nothing(org):
    data = serializers.serialize("json", [Order(pk=99, organization=org, number="fixture")])
    for obj in serializers.deserialize("json", data):
        obj.save()
    assert Order.objects.filter(pk=99).exists()
    assert not OutboxEvent.objects.exists()


def test_queryset_update_and_bulk_create_are_not_tracked(org):
    Order.objects.bulk_create([Order(organization=org, number="b1")])
    Order.objects.update(status="paid")
    assert not OutboxEvent.objects.exists()


def test_update_fields_and_delete(org):
    order = Order.objects.create(organization=org, number="7")
    order.status = "paid"
    order.save(update_fields=["status"])
    order.delete()
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert [row.action for row in rows] == ["created", "updated", "deleted"]
    assert rows[1].payload["text"].endswith("Changed fields: status")
    assert "action:deleted" in rows[2].payload["tags"]


def test_default_event_names_loaded_relations_without_querying_for_them(org):
    order = Order.objects.create(organization=org, number="A-1")
    created = OutboxEvent.objects.get().payload
    assert created["title"] == "Order created: A-1"
    assert "organization: Acme" in created["text"].splitlines()

    fresh = Order.objects.get(pk=order.pk)
    with CaptureQueriesContext(connection) as queries:
        fresh.save(update_fields=["status"])
    assert not [q for q in queries if "testapp_organization" in q["sql"]]
    updated = OutboxEvent.objects.latest("pk").payload
    assert f"organization: {org.pk}" in updated["text"].splitlines()


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("Untracked report", "Untracked created: report"),
        ("untracked  #7", "Untracked created: #7"),
        ("Untracked", "Untracked created: Untracked"),
        ("Untracked-7", "Untracked created: Untracked-7"),
        ("Weekly untracked", "Untracked created: Weekly untracked"),
    ],
)
def test_default_title_does_not_repeat_the_model_name(name, title):
    change = Change(Untracked(name=name), "created", timezone.now())
    assert default_event(change, source_type_name="x")["title"] == title


def test_builder_error_never_breaks_the_save(org, caplog):
    def broken(change: Change) -> dict[str, Any]:
        raise ValueError("builder bug")

    tracking.register(Order, owner="organization", event=broken)
    try:
        with caplog.at_level(logging.ERROR), transaction.atomic():
            Order.objects.create(organization=org, number="1")
    finally:
        tracking.registry.register_from_settings()
    assert Order.objects.count() == 1 and not OutboxEvent.objects.exists()
    assert "Could not build the Datadog event for testapp.Order created" in caplog.text


def test_outbox_insert_failure_never_breaks_the_save(org, caplog, monkeypatch):
    """AT-46: a real database error (missing table) inside the host's transaction."""
    monkeypatch.setattr(OutboxEvent._meta, "db_table", "datadog_partner_no_such_table")
    outbox._statement.cache_clear()
    try:
        with caplog.at_level(logging.ERROR), transaction.atomic():
            Order.objects.create(organization=org, number="1")
            Order.objects.create(organization=org, number="2")  # the transaction still works
    finally:
        monkeypatch.undo()
        outbox._statement.cache_clear()
    assert Order.objects.count() == 2
    assert "Could not write a Datadog outbox row" in caplog.text


def test_a_failing_insert_in_the_hosts_transaction_rolls_back_only_itself(org, caplog):
    """The savepoint that guards the host's transaction travels with the INSERT; after a
    refused row (PostgreSQL refuses NUL in JSON text) the host's transaction goes on."""
    tracking.register(Order, owner="organization", event=lambda change: {"title": "a\x00b"})
    try:
        with caplog.at_level(logging.ERROR), transaction.atomic():
            Order.objects.create(organization=org, number="1")
            Order.objects.create(organization=org, number="2")
    finally:
        tracking.registry.register_from_settings()
    assert Order.objects.count() == 2
    if connection.vendor == "postgresql":
        assert "Could not write a Datadog outbox row" in caplog.text
        assert not OutboxEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_after_a_reconnect_the_row_goes_to_the_new_connection(org):
    """The save path keeps the driver's cursor for the next save: never past its
    connection (``CONN_MAX_AGE=0`` closes it after every request)."""
    Order.objects.create(organization=org, number="before")
    old = connection.connection
    connection.close()
    Order.objects.create(organization=org, number="after")
    assert connection.connection is not old
    titles = sorted(row.payload["title"] for row in OutboxEvent.objects.all())
    assert titles == ["Order created: after", "Order created: before"]


@pytest.mark.parametrize("atomic", [True, False])
def test_the_save_path_adds_one_statement(org, atomic):
    """One round trip, as the floor: in a PostgreSQL transaction the savepoint is part of
    the INSERT's message, not two statements of its own."""

    def statements(save: Any) -> list[str]:
        block = transaction.atomic() if atomic else contextlib.nullcontext()
        with CaptureQueriesContext(connection) as captured, block:
            save()
        return [q["sql"] for q in captured.captured_queries]

    plain = statements(lambda: Untracked.objects.create(name="x"))
    tracked = statements(lambda: Order.objects.create(organization=org, number="1"))
    assert len(tracked) == len(plain) + 1
    assert OutboxEvent._meta.db_table in tracked[-2 if atomic else -1]
    assert OutboxEvent.objects.get().payload["title"] == "Order created: 1"


def test_default_event_is_the_event_the_general_builder_makes(org):
    order = Order.objects.create(organization=org, number="7")
    now = timezone.now()
    change = Change(order, "updated", now, frozenset({"number"}))
    built = default_event(change, source_type_name="My App")
    assert built == payloads.event(
        title=built["title"], text=built["text"], date_happened=now, source_type_name="My App",
        tags=[f"model:{change.label}", "action:updated"],
        aggregation_key=f"testapp.order:{order.pk}",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "update_fields", "options"),
    [
        ("Acme", None, payloads.FieldOptions()),
        (
            'Ünïcode "quoted" %%% \\ back\nslash \x00',
            frozenset({"status", "number"}),
            payloads.FieldOptions(),
        ),
        ("x" * 300, None, payloads.FieldOptions(include=("secret_note",))),
        (
            "masked",
            frozenset({"total"}),
            payloads.FieldOptions(mask=("number",), exclude=("total",)),
        ),
    ],
)
def test_the_stored_default_event_is_the_default_events_json(org, name, update_fields, options):
    """The save path writes the JSON text it makes itself: the bytes ``json.dumps`` gives
    for ``default_event``, whatever the values hold (escapes, non-ASCII, long titles)."""
    org.name = name
    order = Order(pk=7, organization=org, number=name[:20])
    now = timezone.now()
    change = Change(order, "updated", now, update_fields, options)
    stored = payloads.default_event_stored(
        order, "updated", now, update_fields, options, source_type_name="My App"
    )
    assert stored == json.dumps(default_event(change, source_type_name="My App"))


def test_a_builders_payload_that_is_not_json_never_breaks_the_save(org, caplog):
    def builder(change: Change) -> dict[str, Any]:
        return {"title": "t", "text": "x", "date_happened": change.occurred_at}

    tracking.register(Order, owner="organization", event=builder)
    try:
        with caplog.at_level(logging.ERROR), transaction.atomic():
            Order.objects.create(organization=org, number="1")
    finally:
        tracking.registry.register_from_settings()
    assert Order.objects.count() == 1 and not OutboxEvent.objects.exists()
    assert "Could not build the Datadog event for testapp.Order created" in caplog.text


def test_a_failing_kick_request_never_breaks_the_save(org, caplog, monkeypatch):
    def broken(db: object) -> None:
        raise RuntimeError("on_commit internals changed")

    monkeypatch.setattr(kick, "request_kick_on", broken)
    with caplog.at_level(logging.ERROR), transaction.atomic():
        Order.objects.create(organization=org, number="1")
    assert OutboxEvent.objects.count() == 1
    assert "Could not request a delivery kick" in caplog.text


def test_custom_builder_and_callable_owner_returning_a_connection(org):
    conn = make_connection(org)

    def builder(change: Change) -> dict[str, Any] | None:
        if change.instance.status == "skip":  # type: ignore[attr-defined]
            return None
        return {"title": "x" * 300, "text": "y" * 5000, "aggregation_key": "k" * 150,
                "tags": ["Env:Prod Main"]}  # fmt: skip

    tracking.register(Order, owner=lambda order: conn, event=builder, on=["created"])
    try:
        Order.objects.create(organization=org, number="1")
        Order.objects.create(organization=org, number="2", status="skip")
        Order.objects.get(number="1").save()  # "updated" is not tracked any more
    finally:
        tracking.registry.register_from_settings()
    row = OutboxEvent.objects.get()
    assert row.connection == conn and row.owner == org
    assert len(row.payload["text"]) == 4000 and len(row.payload["aggregation_key"]) == 100
    assert len(row.payload["title"]) == 200 and row.payload["tags"] == ["env:prod_main"]


def test_decorator_form_and_uuid_owner(tracked_workspace):
    assert tracking.register(owner="organization")(Order) is Order
    obj = Untracked.objects.create(name="n")
    obj.delete()
    rows = list(OutboxEvent.objects.filter(source="testapp.untracked").order_by("pk"))
    assert [row.action for row in rows] == ["created", "deleted"]
    assert all(row.owner == tracked_workspace for row in rows)


def test_owner_none_means_no_row():
    tracking.register(Untracked, owner=lambda obj: None)
    try:
        Untracked.objects.create(name="orphan")
    finally:
        tracking.registry.unregister(Untracked)
    assert not OutboxEvent.objects.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"owner": "number"}, "must name a foreign key"),
        ({"owner": "nope"}, "no field 'nope'"),
        ({"owner": "organization", "on": ["saved"]}, "'on' must be a subset"),
        ({"owner": "organization", "include": ["missing"]}, "no field 'missing'"),
    ],
)
def test_bad_registrations_fail_loudly(options, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        tracking.register(Order, **options)
    tracking.registry.register_from_settings()


@pytest.mark.parametrize(
    ("tracked", "message"),
    [
        ({"testapp.Nope": {"owner": "x"}}, "no such model"),
        ({"testapp.Order": {}}, "needs an 'owner'"),
        ({"testapp.Order": {"owner": "tests.nowhere.owner"}}, "cannot be imported"),
        (["testapp.Order"], "must be a dict"),
    ],
)
def test_bad_tracked_models_setting_fails_at_startup(partner_settings, tracked, message):
    partner_settings(TRACKED_MODELS=tracked)
    try:
        with pytest.raises(ImproperlyConfigured, match=message):
            tracking.registry.register_from_settings()
    finally:
        partner_settings(
            TRACKED_MODELS={"testapp.Order": {"owner": "organization"}},
        )
        tracking.registry.register_from_settings()


def test_settings_accept_dotted_paths(partner_settings, org):
    partner_settings(
        TRACKED_MODELS={
            "testapp.Order": {
                "owner": "tests.test_tracking.owner_of",
                "on": ["updated"],
                "mask": ["total"],
                "event": "tests.test_tracking.titled",
            }
        },
    )
    try:
        tracking.registry.register_from_settings()
        order = Order.objects.create(organization=org, number="5")
        order.save()
    finally:
        partner_settings(
            TRACKED_MODELS={"testapp.Order": {"owner": "organization"}},
        )
        tracking.registry.register_from_settings()
    row = OutboxEvent.objects.get()
    assert row.payload["title"] == "custom" and "total: ****" in row.payload["text"]


def owner_of(order: Order) -> Organization:
    return order.organization


def titled(change: Change) -> dict[str, Any]:
    return {**default_event(change, source_type_name="x"), "title": "custom"}


# --- public API ------------------------------------------------------------------------------


def test_send_event_metric_and_log_write_rows_for_owner_or_connection(org):
    conn = make_connection(org)
    event = tracking.send_event(org, title="Deploy", text="v2", tags=["team:shop"])
    metric = tracking.send_metric(conn, "shop.orders", 3, metric_type="count", interval=10)
    log = tracking.send_log(org, "paid", attributes={"order": "7"}, tags=["env:test"])
    assert event is not None and metric is not None and log is not None
    assert (event.kind, metric.kind, log.kind) == (OutboxKind.EVENT, OutboxKind.METRIC,
                                                    OutboxKind.LOG)  # fmt: skip
    assert event.connection is None and event.owner == org and metric.connection == conn
    assert metric.payload["points"][0]["value"] == 3.0 and metric.payload["type"] == 1
    assert log.payload["order"] == "7" and log.payload["ddtags"] == "env:test"
    assert log.payload["ddsource"] == log.payload["service"] == "my_apps"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda o: tracking.send_metric(o, "1bad", 1), "metric name"),
        (lambda o: tracking.send_metric(o, "ok", float("nan")), "finite"),
        (lambda o: tracking.send_metric(o, "ok", 1, metric_type="histogram"), "metric_type"),
        (
            lambda o: tracking.send_metric(o, "ok", 1, when=timezone.now() + timedelta(minutes=11)),
            "future",
        ),
        (lambda o: tracking.send_event(o, title="t", text="x", alert_type="fatal"), "alert_type"),
        (lambda o: tracking.send_log(o, "m", attributes={"ddsource": "x"}), "reserved"),
    ],
)
def test_send_api_rejects_what_datadog_would(org, call, message):
    with pytest.raises(ValueError, match=message):
        call(org)
    assert not OutboxEvent.objects.exists()
