"""The sandbox's header names only its own ("Datadog") user, never the host's login."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from .support import PASSWORD, Journey, Shot


def test_signed_in_to_the_host_only_the_header_offers_the_sandbox_sign_in(
    page: Any, dd_live: str, shot: Shot
) -> None:
    get_user_model().objects.create_user("ada", password=PASSWORD)
    journey = Journey(page, dd_live, shot)
    page.goto(dd_live + "/accounts/login/")
    journey.host_login("ada")
    page.wait_for_load_state()
    for path in ("/sandbox/", "/sandbox/login/"):
        page.goto(dd_live + path)
        header = page.inner_text("header .who")
        assert header.strip() == "Sign in", (path, header)
    shot("sandbox-sign-in-header")
    journey.sandbox_login()
    page.wait_for_load_state()
    assert "Signed in as Ada on Datadog (Acme on Datadog)" in page.inner_text("header .who")
    shot("sandbox-signed-in-header")
