from django.urls import path

from .engine import ROUTES
from .views import api

app_name = "datadog_partner_sandbox"

urlpatterns = [
    path("", api.machine_endpoint, {"endpoint": "/"}, name="home"),
] + [
    path(
        route.lstrip("/"),
        api.machine_endpoint,
        {"endpoint": route},
        name=route.strip("/").replace("/", "-"),
    )
    for route in ROUTES
]
