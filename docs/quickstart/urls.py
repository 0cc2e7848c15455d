from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # The onboarding page, the OAuth callback and the customers' connection pages.
    path("datadog/", include("django_datadog_partner.urls")),
    # Development only: the sandbox that stands in for Datadog.
    path("sandbox/", include("django_datadog_partner.sandbox.urls")),
]
