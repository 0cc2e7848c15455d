"""Django settings for building the documentation (autodoc and the reference tables).

Nothing is served and no database is touched: the build only imports the package and
reads its settings accessor, system checks, commands and signals.
"""

SECRET_KEY = "docs-build-only"
DEBUG = True  # the sandbox app refuses to load otherwise
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_q",
    "django_datadog_partner",
    "django_datadog_partner.sandbox",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "django_datadog_partner.urls"
Q_CLUSTER = {"name": "docs", "orm": "default", "timeout": 60, "retry": 120}
DATADOG_PARTNER: dict[str, object] = {}
