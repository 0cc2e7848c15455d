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
        from django_q.signals import post_spawn

        from .delivery.kick import on_worker_start

        # A qcluster worker that starts delivers what waits (a killed worker's rows, kicks
        # lost with the broker) at once instead of at the sweeper's next pass.
        post_spawn.connect(on_worker_start, dispatch_uid="datadog_partner_worker_start")
