"""Routes of the connect flow. ``onboarding`` is the Onboarding URL and ``callback`` the
Redirect URI to register on the OAuth client in Datadog's Developer Platform."""

from django.urls import path

from . import views

app_name = "datadog_partner"

urlpatterns = [
    path("connect/", views.onboarding, name="onboarding"),
    path("callback/", views.callback, name="callback"),
    path("connected/", views.connected, name="connected"),
    path("error/", views.error, name="error"),
    path("connections/", views.connection_list, name="connections"),
    path("connections/<int:pk>/", views.connection_detail, name="connection"),
    path("connections/<int:pk>/disconnect/", views.disconnect, name="disconnect"),
    path("connections/<int:pk>/reconnect/", views.reconnect, name="reconnect"),
    path("connections/<int:pk>/api-key/", views.create_api_key, name="api_key"),
]
