from django.apps import apps
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("datadog/", include("django_datadog_partner.urls")),
    path("", include("shop.urls")),
]
if apps.is_installed("django_datadog_partner.sandbox"):
    urlpatterns.insert(0, path("sandbox/", include("django_datadog_partner.sandbox.urls")))
