"""Settings of the example shop, from environment variables (django-environ).

Without Datadog credentials it runs offline: SQLite, django-q2's ORM broker and the bundled
Datadog sandbox at ``BASE_URL/sandbox``. With ``DATADOG_CLIENT_ID``,
``DATADOG_CLIENT_SECRET`` and ``DATADOG_PARTNER_ENCRYPTION_KEYS`` set, the same code talks
to real Datadog (the sandbox is neither installed nor registered as a site).
"""

from pathlib import Path

import environ

from django_datadog_partner.sandbox import SANDBOX_DOMAIN, site_entry

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"))

PORT = env.int("PORT", default=8000)
BASE_URL = env("BASE_URL", default=f"http://127.0.0.1:{PORT}").rstrip("/")
DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY", default="example-shop-insecure-development-key")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
USE_TZ = True
TIME_ZONE = "UTC"
OFFLINE = not env("DATADOG_CLIENT_ID", default="")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "django_datadog_partner",
    "shop",
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
