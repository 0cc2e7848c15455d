"""Settings for the bench processes and the clusters they start, all from the environment.

``BENCH_PG_DB`` picks a PostgreSQL database on 127.0.0.1 (else the SQLite file
``BENCH_SQLITE``, WAL, synchronous=NORMAL as in perf-baselines.md); ``BENCH_REDIS`` picks
django-q2's Redis broker (else the ORM broker on the same database); ``BENCH_SINK`` is
the sink every bench site points at; ``BENCH_TASK_LOG`` makes workers count the tasks they
run (``bench.probe``); ``BENCH_PARTNER`` is JSON merged into ``DATADOG_PARTNER``;
``BENCH_Q_LOG_LEVEL`` is django-q2's log level; ``BENCH_PG_SYNC=on`` makes PostgreSQL
commits wait for the disk.
"""

import json
import os

from bench.sinks import sites

SECRET_KEY = "bench-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_q",
    "django_datadog_partner",
    "tests.testapp",
]
if os.environ.get("BENCH_TASK_LOG"):
    INSTALLED_APPS.append("bench.probe.ProbeConfig")

if os.environ.get("BENCH_PG_DB"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["BENCH_PG_DB"],
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            # The counterpart of SQLite's synchronous=NORMAL: a commit does not wait for
            # the disk (this VM's fsync costs ~3.5 ms, most of a save otherwise).
            "OPTIONS": {
                "options": f"-c synchronous_commit={os.environ.get('BENCH_PG_SYNC', 'off')}"
            },
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_SQLITE", "bench.sqlite3"),
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

Q_CLUSTER = {
    "name": os.environ.get("BENCH_CLUSTER", "bench"),
    "workers": 2,
    "timeout": 120,
    "retry": 240,
    "ack_failures": True,
    "max_attempts": 1,
    "catch_up": False,
}
if os.environ.get("BENCH_REDIS"):
    Q_CLUSTER["redis"] = os.environ["BENCH_REDIS"]
else:
    Q_CLUSTER["orm"] = "default"

DATADOG_PARTNER = {
    "CLIENT_ID": "bench",
    "CLIENT_SECRET": "bench",
    "BASE_URL": "https://vendor.example",
    "ENCRYPTION_KEYS": ["zUJ3nx6iYJdNfS0Gm0u_IlmGL1p1pMv6D2Mt2rXwzZ0="],
    "TRACKED_MODELS": {"testapp.Order": {"owner": "organization"}},
    "EXTRA_SITES": sites(os.environ["BENCH_SINK"]) if os.environ.get("BENCH_SINK") else {},
    **json.loads(os.environ.get("BENCH_PARTNER") or "{}"),
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    # Quiet in the bench process (readable figures); clusters say "running." at INFO.
    "loggers": {"django-q": {"level": os.environ.get("BENCH_Q_LOG_LEVEL", "WARNING")}},
}
