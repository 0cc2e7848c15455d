"""Settings of the example shop, from environment variables (django-environ).

Without Datadog credentials it runs offline: SQLite, django-q2's ORM broker and the bundled
Datadog sandbox at ``BASE_URL/sandbox``, with DEBUG on and a development secret key. With
``DATADOG_CLIENT_ID``, ``DATADOG_CLIENT_SECRET`` and ``DATADOG_PARTNER_ENCRYPTION_KEYS`` set,
the same code talks to real Datadog (the sandbox is neither installed nor registered as a
site): DEBUG is off unless set, ``SECRET_KEY`` is required, and an ``https://`` ``BASE_URL``
turns on secure cookies, the HTTPS redirect and HSTS, so ``check --deploy`` is clean.
"""

from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from django_datadog_partner.sandbox import SANDBOX_DOMAIN, site_entry

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"))

PORT = env.int("PORT", default=8000)
BASE_URL = env("BASE_URL", default=f"http://127.0.0.1:{PORT}").rstrip("/")
OFFLINE = not env("DATADOG_CLIENT_ID", default="")
# Offline, only the sandbox is reachable: DEBUG (the sandbox refuses to start without it)
# and a development key are fine. With real credentials, nothing insecure is a default.
DEBUG = env.bool("DEBUG", default=OFFLINE)
SECRET_KEY = env("SECRET_KEY", default="example-shop-sandbox-only-insecure-key" if OFFLINE else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "Set the SECRET_KEY environment variable: with DATADOG_CLIENT_ID set, the example "
        "shop has no default key. Generate one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
    )
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS",
    default=["127.0.0.1", "localhost"] if OFFLINE else [urlsplit(BASE_URL).hostname or ""],
)
USE_TZ = True
TIME_ZONE = "UTC"

# Served over HTTPS: secure cookies, redirect to HTTPS and HSTS. HSTS starts at one hour, as
# Django's docs advise; SECURE_HSTS_SECONDS and SECURE_HSTS_PRELOAD make it a commitment.
HTTPS = urlsplit(BASE_URL).scheme == "https"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if env.bool("BEHIND_TLS_PROXY", default=False):
    # Only behind a proxy that sets X-Forwarded-Proto itself and strips the client's.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    # Before the integration, so the shop's templates/datadog_partner/base.html puts the
    # integration's pages in the shop's layout (how a host overrides an app's template).
    "shop",
    "django_datadog_partner",
]
if OFFLINE:
    INSTALLED_APPS.append("django_datadog_partner.sandbox")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "shopsite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
WSGI_APPLICATION = "shopsite.wsgi.application"
STATIC_URL = "/static/"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the qcluster write at the same time: WAL and immediate transactions.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

# django-q2 uses Redis unless "orm" is set; without REDIS_URL the database is the broker.
Q_CLUSTER = {
    "name": "example-shop",
    "workers": 2,
    "timeout": 60,
    "retry": 120,
    "ack_failures": True,
    "max_attempts": 1,
    "catch_up": False,
    "poll": 0.2,
}
if env("REDIS_URL", default=""):
    Q_CLUSTER["redis"] = env("REDIS_URL")
else:
    Q_CLUSTER["orm"] = "default"

if OFFLINE:
    # The sandbox's only client; these values are not secrets.
    client_id, client_secret = "example-shop-sandbox-client", "example-shop-sandbox-secret"
    encryption_keys = env.list(
        "DATADOG_PARTNER_ENCRYPTION_KEYS", default=["Xq1yG3Lw3hJ9cF4tN2pR8sV6bZ0dK5mA7eU1iO3wQ9Y="]
    )
    extra_sites = {SANDBOX_DOMAIN: site_entry(BASE_URL + "/sandbox")}
else:
    # Missing or malformed values are reported by `manage.py check` (datadog_partner.E0xx,
    # each with a hint) rather than failing here with a traceback.
    client_id = env("DATADOG_CLIENT_ID")
    client_secret = env("DATADOG_CLIENT_SECRET", default="")
    encryption_keys = env.list("DATADOG_PARTNER_ENCRYPTION_KEYS", default=[])
    extra_sites = {}

DATADOG_PARTNER = {
    "CLIENT_ID": client_id,
    "CLIENT_SECRET": client_secret,
    "BASE_URL": BASE_URL,
    "ENCRYPTION_KEYS": encryption_keys,
    "EXTRA_SITES": extra_sites,
    "OWNERS_FOR_USER": "shop.hooks.organisations_of",
    "SUCCESS_URL": "/",
    "SOURCE_TYPE_NAME": "example_shop",
    "LOG_SOURCE": "example_shop",
    "LOG_SERVICE": "example-shop",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_datadog_partner": {"handlers": ["console"], "level": "INFO"}},
}
