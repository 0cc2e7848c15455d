"""Minimal settings for the test suite.

SQLite and django-q2's ORM broker by default; ``DATABASE_URL`` (PostgreSQL) and
``REDIS_URL`` (django-q2's Redis broker) switch to real servers, as CI does.
"""

import os
from pathlib import Path

import django
import environ

BASE_DIR = Path(__file__).resolve().parent
env = environ.Env()

# One SQLite test file per test run; child processes (a real qcluster) inherit the name.
os.environ.setdefault("TEST_DB_SUFFIX", f"-{os.getpid()}")

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
if django.VERSION >= (6, 1):
    # Django 6.1 configures email through MAILERS and warns (an error here) without it.
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_q",
    "django_datadog_partner",
    "django_datadog_partner.sandbox",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tests.urls"
LOGIN_URL = "/accounts/login/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": env.db("DATABASE_URL")}
    # One test database per run here too, so concurrent runs do not drop each other's.
    _suffix = os.environ["TEST_DB_SUFFIX"].replace("-", "_")
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}{_suffix}"}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / ".db.sqlite3"),
            # A file, not :memory:, so a real qcluster process can share the test database.
            "TEST": {"NAME": str(BASE_DIR / f".test-db{os.environ['TEST_DB_SUFFIX']}.sqlite3")},
            # A real qcluster writes to the same file: wait for its locks on a loaded machine.
            "OPTIONS": {"timeout": 30},
        }
    }
if os.environ.get("DDP_TEST_CHILD"):
    # A child process of the test run (tests/e2e_support.py starts a real qcluster): it
    # works on the test database the parent created, not on the development one.
    DATABASES["default"]["NAME"] = DATABASES["default"]["TEST"]["NAME"]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

Q_CLUSTER = {
    # Per run, so concurrent runs sharing one Redis never take each other's tasks.
    "name": f"datadog-partner-tests{os.environ['TEST_DB_SUFFIX']}",
    "workers": 2,
    "timeout": 30,
    "retry": 60,
    "ack_failures": True,
    "max_attempts": 1,
    "save_limit": 0,
    "catch_up": False,
    "poll": 0.1,
}
if os.environ.get("REDIS_URL"):
    Q_CLUSTER["redis"] = os.environ["REDIS_URL"]
else:
    Q_CLUSTER["orm"] = "default"

# Test-only keys: never use these anywhere else.
DATADOG_PARTNER = {
    "CLIENT_ID": "test-client-id",
    "CLIENT_SECRET": "test-client-secret",
    "BASE_URL": "https://vendor.example",
    "ENCRYPTION_KEYS": ["zUJ3nx6iYJdNfS0Gm0u_IlmGL1p1pMv6D2Mt2rXwzZ0="],
    # The sandbox app refuses to load with DEBUG off unless forced (test settings only).
    "SANDBOX_FORCE": True,
    # Order changes become events for the order's organization (tests/test_tracking.py).
    "TRACKED_MODELS": {"testapp.Order": {"owner": "organization"}},
}
if os.environ.get("DDP_PARTNER_OVERRIDES"):
    # Settings a test gave its child processes (e.g. EXTRA_SITES of a live sandbox, a short
    # LEASE_SECONDS); see tests/e2e_support.py.
    import json

    DATADOG_PARTNER.update(json.loads(os.environ["DDP_PARTNER_OVERRIDES"]))
