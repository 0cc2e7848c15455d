"""Settings for ``python -m bench``: a throw-away SQLite file (WAL, synchronous=NORMAL, as
in perf-baselines.md) and the local sinks registered as Datadog sites."""

import os

SECRET_KEY = "bench-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_q",
    "django_datadog_partner",
    "tests.testapp",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DB", "bench.sqlite3"),
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
Q_CLUSTER = {
    "name": "bench",
    "orm": "default",
    "timeout": 60,
    "retry": 120,
    "ack_failures": True,
    "log_level": "WARNING",  # keep the figures readable
}
DATADOG_PARTNER = {
    "CLIENT_ID": "bench",
    "CLIENT_SECRET": "bench",
    "BASE_URL": "http://127.0.0.1",
    "ENCRYPTION_KEYS": ["zUJ3nx6iYJdNfS0Gm0u_IlmGL1p1pMv6D2Mt2rXwzZ0="],
    "TRACKED_MODELS": {"testapp.Order": {"owner": "organization"}},
    "EXTRA_SITES": {
        f"sink{n}.bench": {"web_url": url, "api_url": url, "logs_url": url}
        for n, url in enumerate(os.environ.get("BENCH_SINKS", "").split(","))
        if url
    },
}
