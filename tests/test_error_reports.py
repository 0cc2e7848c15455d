"""Error reports never show a secret.

Canary secrets go through every failure path of connect, refresh, revoke, API-key creation
and delivery. Each failure is raised deep inside the HTTP stack (a ``responses`` callback
raising, so requests' and urllib3's frames exist) or by a host's ``post_save`` receiver
while a secret is being stored. Every report the failure produced is then rendered the way
an operator gets it: Django's technical 500 page (``ExceptionReporter.get_traceback_html``,
and the page the test client receives with ``DEBUG`` on) and the mail of
``AdminEmailHandler(include_html=True)``, text and HTML alternative.

Three modes: production (``DEBUG`` off, Django's default filter); ``DEBUG`` on for the
package's own pages (no project setting: the views install the package's filter); and
``DEBUG`` on with the package's filter as ``DEFAULT_EXCEPTION_REPORTER_FILTER`` (what
docs/explanation/security.rst advises a project that calls the package from its own code
with ``DEBUG`` on).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import django
import pytest
import requests
import responses
from cryptography.fernet import Fernet
from django.core import mail
from django.db.models.signals import post_save
from django.test import Client
from django.utils import timezone
from django.utils.log import AdminEmailHandler
from django.views.debug import (
    ExceptionReporter,
    SafeExceptionReporterFilter,
    get_default_exception_reporter_filter,
)

from django_datadog_partner import connections, delivery, error_reports, tracking
from django_datadog_partner.api import api_for
from django_datadog_partner.models import Connection, ConnectionStatus, OutboxEvent
from tests.conftest import Canaries
from tests.connect_support import api, callback, key_json, signed_in, start, token_json
from tests.lifecycle_support import REVOKE_URL as REVOKE
from tests.lifecycle_support import TOKEN_URL as TOKEN
from tests.lifecycle_support import VALIDATE_URL as VALIDATE
from tests.testapp.models import Organization

# Django 6.0 takes plain addresses and deprecates (name, address) pairs;
# 5.2 only understands the pairs.
ADMINS: list[Any] = (
    ["ops@vendor.example"] if django.VERSION >= (6, 0) else [("Ops", "ops@vendor.example")]
)

pytestmark = pytest.mark.django_db

MARKETPLACE, EVENTS, USERS = (
    api("datadoghq.com", path)
    for path in ("/api/v2/api_keys/marketplace", "/api/v1/events", "/api/v2/users")
)
PACKAGE_FILTER = "django_datadog_partner.error_reports.ReporterFilter"
WATCHED_LOGGERS = ("django.request", "django_datadog_partner")
EXPLOSION = "exploded deep inside"


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@dataclass(repr=False)
class Env:
    """One scenario's world: canaries, the fake Datadog, and whatever the failure produced.

    Its ``repr`` shows nothing: test frames are in the reports too, and must not be what
    leaks a canary.
    """

    canaries: Canaries
    rsps: responses.RequestsMock
    user: Any
    client: Client
    mode: str = "production"
    faults: list[str] = field(default_factory=list)
    records: list[logging.LogRecord] = field(default_factory=list)
    escaped: list[BaseException] = field(default_factory=list)
    pages: list[tuple[str, str]] = field(default_factory=list)

    def explode(self, what: type[Exception] = RuntimeError) -> Callable[..., Any]:
        """A ``responses`` callback raising inside requests' adapter."""

        def callback(request: requests.PreparedRequest) -> Any:
            self.faults.append(str(request.url))
            raise what(f"{EXPLOSION}: {request.url}")

        return callback

    def fail_on(self, url: str, what: type[Exception] = RuntimeError) -> None:
        self.rsps.add_callback(responses.POST, url, callback=self.explode(what))

    def call(self, operation: Callable[[], Any]) -> None:
        """Host code (a task, a command, a project's view) calling an operation; what it
        returns is what an operator sees when the failure is handled."""
        try:
            outcome = operation()
        except Exception as exc:  # the report of any failure is the subject
            self.escaped.append(exc)
        else:
            self.pages.append(("the outcome", repr(outcome) + str(outcome)))

    def visit(self, method: str, url: str) -> None:
        """A package page, answered as Django answers it (``raise_request_exception`` off)."""
        response = getattr(self.client, method)(url)
        self.pages.append((url, response.content.decode(errors="replace")))
        if response.status_code in (301, 302) and response["Location"].startswith("/"):
            after = self.client.get(response["Location"])
            self.pages.append((response["Location"], after.content.decode(errors="replace")))

    def connection(
        self, *, expires_in: int = 3600, status: str = ConnectionStatus.ACTIVE, key: bool = True
    ) -> Connection:
        connection = Connection(
            domain="datadoghq.com", site="https://app.datadoghq.com", dd_org_id="org-1"
        )
        connection.status = status
        connection.set_owner(self.user)
        connection.access_token = self.canaries["access_token"]
        connection.refresh_token = self.canaries["refresh_token"]
        connection.api_key = self.canaries["api_key"] if key else None
        connection.expires_at = timezone.now() + timedelta(seconds=expires_in)
        connection.save()
        return connection

    def tokens(self, prefix: str = "") -> dict[str, object]:
        """A token answer of canaries: the first ones, or with ``prefix="new_"`` rotated ones."""
        return token_json(
            self.canaries[f"{prefix}access_token"], self.canaries[f"{prefix}refresh_token"]
        )

    def reports(self) -> list[tuple[str, str]]:
        """Every rendering of every failure: technical 500 pages, mails, received pages.

        In the "debug" mode only what a request's own page shows is read: with ``DEBUG``
        on, Django's default filter shows every variable of a report made outside a
        request, by design (the "debug+filter" mode covers those).
        """
        rendered = list(self.pages)
        for record in self.records:
            request = getattr(record, "request", None)
            assert record.exc_info is not None
            if self.mode == "debug" and request is None:
                continue
            html = ExceptionReporter(request, *record.exc_info).get_traceback_html()
            rendered.append((f"technical 500 of {record.name!r} record", html))
        handler = AdminEmailHandler(include_html=True)
        for exc in self.escaped:
            exc_info = (type(exc), exc, exc.__traceback__)
            html = ExceptionReporter(None, *exc_info).get_traceback_html()
            rendered.append((f"technical 500 of {type(exc).__name__}", html))
            handler.emit(
                logging.LogRecord("host", logging.ERROR, __file__, 1, "failed", (), exc_info)
            )
        for message in [] if self.mode == "debug" else mail.outbox:
            rendered.append(("mail subject and body", f"{message.subject}\n{message.body}"))
            for content, _mimetype in getattr(message, "alternatives", []):
                rendered.append(("mail HTML alternative", str(content)))
        return rendered


@pytest.fixture(autouse=True)
def _fresh_default_filter() -> Iterator[None]:
    """Django caches the default filter: a test that sets the setting must not leak it."""
    clear = get_default_exception_reporter_filter.cache_clear  # type: ignore[attr-defined]
    clear()
    yield
    clear()


@pytest.fixture
def watched_loggers() -> Iterator[list[logging.LogRecord]]:
    """``AdminEmailHandler(include_html=True)`` where a project would put it, and a capture."""
    records: list[logging.LogRecord] = []
    handlers = [AdminEmailHandler(include_html=True), _Keep(records)]
    for name in WATCHED_LOGGERS:
        for handler in handlers:
            logging.getLogger(name).addHandler(handler)
    yield records
    for name in WATCHED_LOGGERS:
        for handler in handlers:
            logging.getLogger(name).removeHandler(handler)


@pytest.fixture
def receiver_fault(request: pytest.FixtureRequest) -> Iterator[Callable[[str, Env], None]]:
    """``arm(field, env)``: a host receiver raises when ``field`` of a connection is saved."""
    armed: list[tuple[str, Env]] = []

    def explode(sender: Any, instance: Connection, update_fields: Any = None, **_: Any) -> None:
        for name, env in armed:
            if update_fields and name in update_fields:
                env.faults.append(f"post_save {name}")
                raise RuntimeError(f"{EXPLOSION}: a host receiver")

    post_save.connect(explode, sender=Connection, weak=False, dispatch_uid="reports-explode")
    yield lambda name, env: armed.append((name, env))
    post_save.disconnect(sender=Connection, dispatch_uid="reports-explode")


@pytest.fixture
def canaries(canaries: Canaries) -> Canaries:
    canaries["new_access_token"] = "at2-canary-" + secrets.token_hex(12)
    canaries["new_refresh_token"] = "rt2-canary-" + secrets.token_hex(12)
    canaries["encryption_key"] = Fernet.generate_key().decode()
    return canaries


# --- The failure paths -------------------------------------------------------------------


def connect_token_exchange(env: Env, arm: Any) -> None:
    env.fail_on(TOKEN)
    _connect(env)


def connect_marketplace(env: Env, arm: Any) -> None:
    env.rsps.post(TOKEN, json=env.tokens())
    env.fail_on(MARKETPLACE)
    _connect(env)


def connect_key_stored(env: Env, arm: Any) -> None:
    env.rsps.post(TOKEN, json=env.tokens())
    env.rsps.post(MARKETPLACE, json=key_json(env.canaries["api_key"]), status=201)
    arm("api_key", env)
    _connect(env)


def _connect(env: Env) -> None:
    started = start(env.client)
    verifier = started.row.code_verifier
    assert verifier is not None
    env.canaries["verifier"] = verifier.reveal()
    response = callback(env.client, started.state, code=env.canaries["code"])
    env.pages.append(("callback", response.content.decode()))
    if response.status_code == 302 and response["Location"].startswith("/"):
        env.visit("get", response["Location"])


def refresh_transport(env: Env, arm: Any) -> None:
    env.fail_on(TOKEN)
    connection = env.connection(expires_in=-60)
    env.call(lambda: connections.refresh(connection, force=True))


def refresh_network(env: Env, arm: Any) -> None:
    env.fail_on(TOKEN, requests.ConnectionError)
    connection = env.connection(expires_in=-60)
    env.call(lambda: connections.refresh(connection, force=True))


def refresh_tokens_stored(env: Env, arm: Any) -> None:
    env.rsps.post(TOKEN, json=env.tokens("new_"))
    arm("access_token", env)
    connection = env.connection(expires_in=-60)
    env.call(lambda: connections.refresh(connection, force=True))


def api_refresh(env: Env, arm: Any) -> None:
    env.fail_on(TOKEN)
    connection = env.connection(expires_in=-60)
    env.call(lambda: api_for(connection).get("/api/v2/users"))


def api_call(env: Env, arm: Any) -> None:
    env.rsps.add_callback(responses.GET, USERS, callback=env.explode())
    connection = env.connection()
    env.call(lambda: api_for(connection).get("/api/v2/users"))


def api_call_network(env: Env, arm: Any) -> None:
    env.rsps.add_callback(responses.POST, USERS, callback=env.explode(requests.ConnectionError))
    connection = env.connection()
    env.call(lambda: api_for(connection).post("/api/v2/users", json={"data": {}}))


def revoke_page(env: Env, arm: Any) -> None:
    env.fail_on(REVOKE)
    connection = env.connection()
    env.visit("post", f"/datadog/connections/{connection.pk}/disconnect/")


def revoke_call(env: Env, arm: Any) -> None:
    env.fail_on(REVOKE)
    connection = env.connection()
    env.call(lambda: connections.revoke(connection, reason="From a command."))


def key_page_marketplace(env: Env, arm: Any) -> None:
    env.fail_on(MARKETPLACE)
    connection = env.connection(status=ConnectionStatus.KEY_MISSING, key=False)
    env.visit("post", f"/datadog/connections/{connection.pk}/api-key/")


def key_page_refresh(env: Env, arm: Any) -> None:
    env.fail_on(TOKEN)
    connection = env.connection(expires_in=-60, status=ConnectionStatus.KEY_MISSING)
    env.visit("post", f"/datadog/connections/{connection.pk}/api-key/")


def key_page_key_stored(env: Env, arm: Any) -> None:
    env.rsps.post(MARKETPLACE, json=key_json(env.canaries["api_key"]), status=201)
    arm("api_key", env)
    connection = env.connection(status=ConnectionStatus.KEY_MISSING, key=False)
    env.visit("post", f"/datadog/connections/{connection.pk}/api-key/")


def delivery_intake(env: Env, arm: Any) -> None:
    env.fail_on(EVENTS)
    _deliver(env)


def delivery_validate(env: Env, arm: Any) -> None:
    env.rsps.post(EVENTS, status=403, json={"errors": ["Forbidden"]})
    env.rsps.add_callback(responses.GET, VALIDATE, callback=env.explode())
    _deliver(env)


def _deliver(env: Env) -> None:
    org = Organization.objects.create(name="Acme")
    connection = env.connection()
    connection.set_owner(org)
    connection.save()
    tracking.send_event(org, title="Order shipped", text="An order shipped.")
    env.call(delivery.drain)
    rows = OutboxEvent.objects.values_list("status", "last_error_code", "last_error")
    env.pages.append(("the outbox rows", str(list(rows))))


PAGES = {
    "connect, token exchange": connect_token_exchange,
    "connect, marketplace key": connect_marketplace,
    "connect, storing the key": connect_key_stored,
    "revoke, disconnect page": revoke_page,
    "key creation page, marketplace": key_page_marketplace,
    "key creation page, refresh": key_page_refresh,
    "key creation page, storing the key": key_page_key_stored,
}
CALLS = {
    "refresh, transport": refresh_transport,
    "refresh, network": refresh_network,
    "refresh, storing the tokens": refresh_tokens_stored,
    "api, refresh": api_refresh,
    "api, call": api_call,
    "api, call, network": api_call_network,
    "revoke, command": revoke_call,
    "delivery, intake": delivery_intake,
    "delivery, key validation": delivery_validate,
}
CASES = [
    *[pytest.param(path, "production", id=f"{path} / production") for path in {**PAGES, **CALLS}],
    *[pytest.param(path, "debug", id=f"{path} / DEBUG page") for path in PAGES],
    *[
        pytest.param(path, "debug+filter", id=f"{path} / DEBUG, project filter")
        for path in {**PAGES, **CALLS}
    ],
]


@pytest.fixture
def env(
    canaries: Canaries,
    mocked_http: responses.RequestsMock,
    django_user_model: Any,
    watched_loggers: list[logging.LogRecord],
) -> Env:
    user = django_user_model.objects.create_user(username="alice", password="pw")
    client = signed_in(user)
    client.raise_request_exception = False
    return Env(canaries, mocked_http, user, client, records=watched_loggers)


@pytest.mark.parametrize(("path", "mode"), CASES)
def test_no_error_report_shows_a_secret(
    partner_settings: Any,
    path: str,
    mode: str,
    env: Env,
    canaries: Canaries,
    settings: Any,
    receiver_fault: Callable[[str, Env], None],
) -> None:
    partner_settings(
        CLIENT_SECRET=canaries["client_secret"],
        ENCRYPTION_KEYS=[canaries["encryption_key"]],
    )
    settings.ADMINS = ADMINS
    settings.DEBUG = mode != "production"
    if mode == "debug+filter":
        settings.DEFAULT_EXCEPTION_REPORTER_FILTER = PACKAGE_FILTER
    env.mode = mode

    {**PAGES, **CALLS}[path](env, receiver_fault)

    assert env.faults, "the failure was never raised: the scenario tests nothing"
    reports = env.reports()
    assert reports
    for where, text in reports:
        canaries.assert_absent(text, where)


def test_the_reports_checked_do_show_the_failure(
    env: Env, receiver_fault: Callable[[str, Env], None]
) -> None:
    """The sweep reads real reports: the error, the package's frames, their variables'
    names, each value replaced by Django's substitute."""
    refresh_tokens_stored(env, receiver_fault)
    (html,) = [text for where, text in env.reports() if where.startswith("technical 500")]
    assert EXPLOSION in html
    frame = html[html.index("in _refresh_locked") :]
    hidden = re.search(r"<td>sent</td>\s*<td class=\"code\"><pre>&#x27;\*{20}&#x27;</pre>", frame)
    assert hidden is not None


def test_the_package_filter_hides_library_frames_even_unmarked_and_with_debug_on(
    settings: Any, canaries: Canaries
) -> None:
    """Defence in depth: a requests frame reached without any ``sensitive_variables``."""
    settings.DEBUG = True
    try:
        requests.utils.check_header_validity(("DD-API-KEY", canaries["api_key"] + "\n"))
    except requests.exceptions.InvalidHeader as exc:
        traceback = exc.__traceback__
    assert traceback is not None
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    frame = traceback.tb_frame
    assert frame.f_globals["__name__"] == "requests.utils"
    shown = dict(error_reports.REPORTER_FILTER.get_traceback_frame_variables(None, frame))
    assert shown and set(shown.values()) == {error_reports.REPORTER_FILTER.cleansed_substitute}
    default = SafeExceptionReporterFilter().get_traceback_frame_variables(None, frame)
    assert canaries["api_key"] in str(dict(default))  # what Django alone shows with DEBUG on
