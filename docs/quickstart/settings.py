# --- Datadog integration ------------------------------------------------------------
# Add this to the end of your settings.py. It connects to the bundled sandbox, a local
# stand-in for Datadog that only runs with DEBUG on; production settings follow later.
import os

from django_datadog_partner.sandbox import SANDBOX_DOMAIN, site_entry

# Where this site is reachable, as the browser sees it (runserver's default address).
BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS += [
    "django_q",  # the workers that refresh tokens and deliver telemetry
    "django_datadog_partner",
    "django_datadog_partner.sandbox",  # development only: the local "Datadog"
]

# The onboarding page is for signed-in users; signed-out ones are sent here. A fresh
# project has only the admin's login page; point this at your own login page if you have
# one.
LOGIN_URL = "admin:login"

DATADOG_PARTNER = {
    # The sandbox accepts the one OAuth client configured here; these are not secrets.
    "CLIENT_ID": "quickstart-client",
    "CLIENT_SECRET": "quickstart-secret",
    "BASE_URL": BASE_URL,
    # Generate with `python -m django_datadog_partner.crypto`; comma-separate several.
    "ENCRYPTION_KEYS": [
        key for key in os.environ.get("DATADOG_PARTNER_ENCRYPTION_KEYS", "").split(",") if key
    ],
    # Register the sandbox, mounted at /sandbox/ in urls.py, as a Datadog site.
    "EXTRA_SITES": {SANDBOX_DOMAIN: site_entry(BASE_URL + "/sandbox")},
    "SOURCE_TYPE_NAME": "quickstart",
}

# startproject's SQLite database, written by the web server and the workers at once:
# immediate transactions wait for the lock instead of failing with "database is locked"
# (Django 5.1+), and WAL lets reads go on during a write.
DATABASES["default"]["OPTIONS"] = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}

# django-q2 uses Redis unless "orm" is set: here the database is the broker.
Q_CLUSTER = {
    "name": "quickstart",
    "orm": "default",
    "timeout": 60,
    "retry": 120,  # must exceed timeout
    "ack_failures": True,  # the outbox owns retries; the broker must not replay
    "max_attempts": 1,
}
