from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DatadogPartnerConfig(AppConfig):
    name = "django_datadog_partner"
    label = "datadog_partner"
    verbose_name = _("Datadog integration")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Wiring only: no database, network or settings validation here.
        from . import checks  # noqa: F401  (registers the system checks)
        from .tracking import registry

        registry.register_from_settings()  # connects receivers for TRACKED_MODELS
