from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("datadog/", include("django_datadog_partner.urls")),
    path("sandbox/", include("django_datadog_partner.sandbox.urls")),
]
