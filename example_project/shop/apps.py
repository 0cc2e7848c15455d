from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Order changes become Datadog events for the order's organisation.
        from django_datadog_partner import tracking

        from .models import Order

        tracking.register(
            Order,
            on=("created", "updated"),
            owner="organisation",
            include=("number", "status", "total", "customer"),
        )
