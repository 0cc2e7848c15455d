from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _


class SandboxConfig(AppConfig):
    """The local stand-in for Datadog. Development, demos and tests only."""

    name = "django_datadog_partner.sandbox"
    label = "datadog_partner_sandbox"
    verbose_name = _("Datadog sandbox")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A production server must never answer as "Datadog": refuse to start outside DEBUG.
        from ..conf import app_settings

        if not settings.DEBUG and not app_settings.SANDBOX_FORCE:
            raise ImproperlyConfigured(
                "django_datadog_partner.sandbox is installed but DEBUG is off. The sandbox "
                "impersonates Datadog and must not run in production: remove it from "
                "INSTALLED_APPS, or set DATADOG_PARTNER['SANDBOX_FORCE'] = True for a test run."
            )
        from . import checks  # noqa: F401  (registers the system checks)
