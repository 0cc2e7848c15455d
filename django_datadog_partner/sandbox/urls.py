from django.urls import path

from .engine import PLACEHOLDER, ROUTES
from .views import api, authorize, orgs, pages

app_name = "datadog_partner_sandbox"

urlpatterns = [
    path("", pages.tile, name="home"),
    path("login/", pages.login, name="login"),
    path("logout/", pages.logout, name="logout"),
    path("oauth2/v1/authorize", authorize.authorize, name="authorize"),
    path("orgs/", orgs.org_list, name="orgs"),
    path("orgs/<int:pk>/", orgs.org_detail, name="org"),
    path("orgs/<int:pk>/faults/", orgs.update_faults, name="faults"),
    path("orgs/<int:pk>/revoke-api-key/", orgs.revoke_api_key, name="revoke_api_key"),
    path("orgs/<int:pk>/restore-api-key/", orgs.restore_api_key, name="restore_api_key"),
    path("grants/<int:pk>/revoke/", orgs.revoke_grant, name="revoke_grant"),
    path("organization-settings/api-keys", orgs.api_keys_page, name="api_keys"),
] + [
    # Machine endpoints: token, revoke, marketplace key and intake (CSRF-exempt there only).
    path(
        PLACEHOLDER.sub(r"<str:\1>", route.lstrip("/")),
        api.machine_endpoint,
        {"endpoint": route},
        name=PLACEHOLDER.sub(r"\1", route.strip("/")).replace("/", "-"),
    )
    for route in ROUTES
]
