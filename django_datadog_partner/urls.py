from django.urls import path  # noqa: F401

app_name = "datadog_partner"

urlpatterns: list = []
