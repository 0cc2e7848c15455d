"""System checks (``datadog_partner.E0xx`` errors, ``W0xx`` warnings), each tested.

Why one module of this length: its one concern is Django's check registry for the app, so
every id ``manage.py check`` can print is written here and nowhere else (the docs'
reference is generated from this registry, and ``tests/test_docs.py`` reads these ids).
About twenty checks with a message, a hint and an id each take ~15 lines apiece; split by
topic they would scatter the ids that operators look up and the hints that must agree.
Hints that send the reader on name a documentation page by its source path (``see()``);
a test checks that each named page exists.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from .conf import SETTING_NAME, app_settings


def see(page: str, topic: str) -> str:
    """A hint's pointer into the documentation; ``page`` is its path under ``docs/``."""
    return f"See {topic} in the documentation (docs/{page}.rst)."


def settings_doc(key: str) -> str:
    return see("reference/settings", f"{key} in the settings reference")


CheckFunction = Callable[..., list[CheckMessage]]


def database_check(check: CheckFunction) -> CheckFunction:
    """Register ``check`` to run only under ``check --database``, silent before ``migrate``."""

    @functools.wraps(check)
    def wrapper(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
        if not kwargs.get("databases"):
            return []
        try:
            return check(app_configs, **kwargs)
        except DatabaseError:  # not migrated yet
            return []

    return register(Tags.database)(wrapper)


@register(Tags.security, Tags.compatibility)
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    errors += _check_client_credentials()
    errors += _check_base_url()
    errors += _check_encryption_keys()
    errors += _check_django_q()
    errors += _check_extra_sites()
    return errors


def _check_client_credentials() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if not app_settings.raw.get("CLIENT_ID"):
        errors.append(
            Error(
                f"{SETTING_NAME}['CLIENT_ID'] is not set.",
                hint="Copy the OAuth client id from Datadog's Developer Platform "
                "(Configuration Method → API with OAuth). " + settings_doc("CLIENT_ID"),
                id="datadog_partner.E001",
            )
        )
    if not app_settings.raw.get("CLIENT_SECRET"):
        errors.append(
            Error(
                f"{SETTING_NAME}['CLIENT_SECRET'] is not set.",
                hint="Set the OAuth client secret (a string, or a callable that reads it "
                "from your secrets manager). " + settings_doc("CLIENT_SECRET"),
                id="datadog_partner.E002",
            )
        )
    return errors


def _check_base_url() -> list[CheckMessage]:
    value = app_settings.raw.get("BASE_URL")
    if not value:
        return [
            Error(
                f"{SETTING_NAME}['BASE_URL'] is not set.",
                hint="Set it to the public origin of this site, e.g. "
                "'https://app.example.com'; the OAuth redirect URI is built from it, "
                "never from the Host header. " + settings_doc("BASE_URL"),
                id="datadog_partner.E003",
            )
        ]
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        return [
            Error(
                f"{SETTING_NAME}['BASE_URL'] must be an origin like 'https://app.example.com'.",
                hint="Scheme and host only (a port is fine); no path, query or fragment.",
                id="datadog_partner.E004",
            )
        ]
    if parts.scheme != "https" and not settings.DEBUG:
        return [
            Error(
                f"{SETTING_NAME}['BASE_URL'] must use https outside DEBUG.",
                hint="Datadog sends authorization codes to the redirect URI: serve it over https.",
                id="datadog_partner.E005",
            )
        ]
    return []


def _check_encryption_keys() -> list[CheckMessage]:
    from . import crypto

    if not app_settings.raw.get("ENCRYPTION_KEYS"):
        return [
            Error(
                f"{SETTING_NAME}['ENCRYPTION_KEYS'] is not set.",
                hint="Generate a key with `python -m django_datadog_partner.crypto` and set "
                "ENCRYPTION_KEYS to a list holding it (newest first). Keep it out of source "
                "control and independent of SECRET_KEY. " + settings_doc("ENCRYPTION_KEYS"),
                id="datadog_partner.E006",
            )
        ]
    try:
        crypto._multifernet(crypto.current_keys())
    except ImproperlyConfigured:
        return [
            Error(
                f"{SETTING_NAME}['ENCRYPTION_KEYS'] holds a value that is not a Fernet key.",
                hint="Each key is 32 url-safe base64-encoded bytes, as printed by "
                "`python -m django_datadog_partner.crypto`.",
                id="datadog_partner.E007",
            )
        ]
    return []


def _check_django_q() -> list[CheckMessage]:
    if not apps.is_installed("django_q"):
        return [
            Error(
                "django_q is not in INSTALLED_APPS.",
                hint="Add 'django_q' to INSTALLED_APPS and run a `manage.py qcluster`: "
                "token refresh, health checks and telemetry delivery run there.",
                id="datadog_partner.E008",
            )
        ]
    return []


def _check_extra_sites() -> list[CheckMessage]:
    from .regions import DATADOG_SITES, is_loopback_url

    raw = app_settings.raw.get("EXTRA_SITES", {})
    if not isinstance(raw, dict):
        return [_extra_sites_error("EXTRA_SITES must be a dict keyed by domain.")]
    errors: list[CheckMessage] = []
    known = {site.domain for site in DATADOG_SITES}
    for domain, urls in raw.items():
        if domain in known:
            errors.append(_extra_sites_error(f"{domain!r} is a Datadog site already."))
            continue
        if not isinstance(urls, dict) or not {"web_url", "api_url"} <= set(urls):
            errors.append(
                _extra_sites_error(f"{domain!r} needs 'web_url', 'api_url' and 'logs_url'.")
            )
            continue
        for key in ("web_url", "api_url", "logs_url"):
            url = str(urls.get(key, urls["api_url"]))
            parts = urlsplit(url)
            if parts.scheme == "https" and parts.netloc:
                continue
            if parts.scheme == "http" and is_loopback_url(url):
                continue
            errors.append(
                _extra_sites_error(
                    f"{domain!r} {key} {url!r} must be https (plain http only on loopback)."
                )
            )
    return errors


def _extra_sites_error(message: str) -> Error:
    return Error(
        f"{SETTING_NAME}['EXTRA_SITES']: {message}",
        hint="Entries look like {'sandbox.localhost': {'web_url': ..., 'api_url': ..., "
        "'logs_url': ...}}; they exist for the bundled sandbox and local tests.",
        id="datadog_partner.E009",
    )


# --- Telemetry delivery (W010-W019) ---------------------------------------------------------

SWEEPER_TASK = "django_datadog_partner.tasks.sweep_outbox"
SCHEDULE_HINT = "Run `python manage.py datadog_partner_schedule` (it creates the sweeper)."


@register(Tags.compatibility)
def check_q_cluster(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """django-q2 must not replay failed deliveries; the outbox owns retries."""
    cluster = getattr(settings, "Q_CLUSTER", None) or {}
    warnings: list[CheckMessage] = []
    timeout = cluster.get("timeout")
    if timeout is None:
        warnings.append(
            Warning(
                "Q_CLUSTER['timeout'] is not set: a hung delivery task is never stopped.",
                hint="Set a timeout (e.g. 60) and a larger 'retry' (e.g. 120).",
                id="datadog_partner.W012",
            )
        )
    elif cluster.get("retry", 60) <= timeout:
        warnings.append(
            Warning(
                f"Q_CLUSTER['retry'] ({cluster.get('retry', 60)}) is not larger than "
                f"'timeout' ({timeout}): the ORM broker hands a running task to a second worker.",
                hint="django-q2 requires retry > timeout; e.g. timeout 60, retry 120.",
                id="datadog_partner.W013",
            )
        )
    if not cluster.get("ack_failures"):
        warnings.append(
            Warning(
                "Q_CLUSTER['ack_failures'] is off: the broker replays failed tasks, a second "
                "retry layer on top of the outbox's own backoff.",
                hint="Set 'ack_failures': True (and 'max_attempts': 1).",
                id="datadog_partner.W014",
            )
        )
    return warnings


@register(Tags.compatibility)
def check_lease(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """A request may only start while its answer can arrive before the lease ends; a run
    renews its lease every quarter of it, so three quarters must exceed the timeouts."""
    timeout = sum(app_settings.HTTP_TIMEOUT)
    if timeout < 0.75 * app_settings.LEASE_SECONDS:
        return []
    return [
        Error(
            f"{SETTING_NAME}['LEASE_SECONDS'] ({app_settings.LEASE_SECONDS:g}) must be more "
            f"than 4/3 of the HTTP timeouts ({timeout:g} s): a run renews its lease every "
            "quarter of it, and otherwise no delivery request can start before it ends.",
            hint="Keep the default (20) or raise it with HTTP_TIMEOUT.",
            id="datadog_partner.E010",
        )
    ]


@database_check
def check_outbox_sweeper(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Without the sweeper schedule, retries and rows of lost kicks are never sent."""
    from django_q.models import Schedule

    if Schedule.objects.filter(func=SWEEPER_TASK).exists():
        return []
    if not app_settings.KICK_ON_COMMIT:
        return [
            Warning(
                "KICK_ON_COMMIT is off and no outbox sweeper is scheduled: telemetry is only "
                "sent when `datadog_partner_deliver` runs.",
                hint=SCHEDULE_HINT + " Silence this warning if cron runs the command.",
                id="datadog_partner.W010",
            )
        ]
    return [
        Warning(
            "No outbox sweeper is scheduled: retries, and rows whose kick was lost (broker "
            "outage, Redis losing in-flight tasks, a killed worker), are never sent.",
            hint=SCHEDULE_HINT,
            id="datadog_partner.W011",
        )
    ]


@database_check
def check_outbox_draining(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Due rows nobody claims mean no worker drains the outbox (stopped or wedged cluster)."""
    from .report import StatusReport

    waiting = StatusReport().oldest_due_seconds
    limit = app_settings.OUTBOX_STALE_AFTER
    if waiting is None or waiting <= limit:
        return []
    return [
        Warning(
            f"Telemetry has been due for {waiting / 60:.0f} minutes without being sent "
            f"(limit {limit / 60:.0f}): no django-q2 cluster is draining the outbox.",
            hint="Start or restart `python manage.py qcluster` and check that "
            "`datadog_partner_schedule` has run; `datadog_partner_deliver` drains it now. "
            "Monitor this with `manage.py check --database default --fail-level WARNING`.",
            id="datadog_partner.W015",
        )
    ]


# --- Connection lifecycle (W020-W029); they read the database, so run with --database ----


@database_check
def check_lifecycle(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Schedules the lifecycle needs, open configuration alarms, disconnects never confirmed."""
    from .report import REVOKING_TOO_LONG, StatusReport

    report = StatusReport()
    missing = [spec.name for spec in report.schedules_missing if spec.func != SWEEPER_TASK]
    alarms = [alarm.code for alarm in report.alarms]
    stuck = report.revoking_too_long
    warnings: list[CheckMessage] = []
    if missing:
        warnings.append(
            Warning(
                f"django-q2 schedules missing or outdated: {', '.join(sorted(missing))}.",
                hint="Run `python manage.py datadog_partner_schedule`: without them "
                "uninstalls go unnoticed and failed disconnects are never retried.",
                id="datadog_partner.W020",
            )
        )
    if alarms:
        warnings.append(
            Warning(
                f"Open configuration alarms: {', '.join(alarms)}.",
                hint="See the alarms in the admin (Datadog integration > Configuration "
                "alarms); fix the cause, then clear them.",
                id="datadog_partner.W021",
            )
        )
    if stuck:
        warnings.append(
            Warning(
                f"{stuck} connection(s) have been revoking for over "
                f"{REVOKING_TOO_LONG.total_seconds() / 3600:.0f} hours: Datadog keeps refusing "
                "or failing the revocation.",
                hint="See their last error in the admin; `manage.py datadog_partner_revoke ID` "
                "retries one and prints why it fails. "
                + see("howto/stuck-revoking", "'A connection stuck in revoking'"),
                id="datadog_partner.W022",
            )
        )
    return warnings


# --- Listing declarations (W030-W039) ----------------------------------------------------------


@register(Tags.compatibility)
def check_listing_declarations(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``METRICS`` and ``SAMPLE_LOGS`` hold what Datadog's listing review accepts."""
    from .listing import declaration_problems

    try:
        problems = declaration_problems()
    except ImproperlyConfigured as exc:
        problems = [("SAMPLE_LOGS" if "SAMPLE_LOGS" in str(exc) else "METRICS", str(exc))]
    warnings: list[CheckMessage] = []
    for setting, problem in problems:
        if setting == "METRICS":
            warnings.append(
                Warning(
                    f"{problem}",
                    hint="metadata.csv is written from METRICS (datadog_partner_listing "
                    "--output-dir); Datadog's listing review refuses this value.",
                    id="datadog_partner.W030",
                )
            )
        else:
            warnings.append(
                Warning(
                    f"{problem}",
                    hint="Each sample is a dict of send_log() arguments; they become "
                    "sample_logs.json for the listing's log pipeline.",
                    id="datadog_partner.W031",
                )
            )
    return warnings
