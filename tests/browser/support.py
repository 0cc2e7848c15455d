"""Helpers of the browser tests: screenshots, the host's owner hook, and the steps of the
connect journey a person clicks through."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.testapp.models import Organization

ROOT = Path(__file__).resolve().parent.parent.parent
PASSWORD = "browser-test-password"
DEADLINE = 20.0
#: The window the admin must fit: a laptop, both admin sidebars open.
VIEWPORT = {"width": 1280, "height": 800}
DOCS_SCREENSHOTS = ROOT / "docs" / "_static" / "screenshots"

#: What a person would see as broken on an admin page (see the script).
LAYOUT_PROBLEMS = (Path(__file__).parent / "layout_problems.js").read_text()


def organizations_of(user: Any) -> list[Organization]:
    """``OWNERS_FOR_USER`` of the test host: the organizations the user is a member of."""
    return list(Organization.objects.filter(members=user).order_by("name"))


class Shot:
    """Numbered screenshots of one test, for people reading CI artifacts."""

    def __init__(self, page: Any, test_name: str, folder: Path | None = None) -> None:
        self.page = page
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        self.folder = folder or ROOT / "test-artifacts" / "screenshots"
        self.count = 0

    def __call__(self, label: str) -> None:
        self.take(label)

    def take(self, label: str) -> None:
        self.count += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.name}-{self.count:02d}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)


def docs_shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """A screenshot the docs show, under a stable name: written to docs/_static/screenshots/
    with ``DDP_UPDATE_SCREENSHOTS=1`` (to be committed), else to test-artifacts/docs/."""
    if os.environ.get("DDP_UPDATE_SCREENSHOTS") == "1":
        folder = DOCS_SCREENSHOTS
    else:
        folder = ROOT / "test-artifacts" / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def layout_problems(page: Any) -> list[str]:
    return list(page.evaluate(LAYOUT_PROBLEMS))


def eventually(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something truthy (work done by another process)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out waiting for {what}")
        time.sleep(0.25)


class Journey:
    """What a person does, step by step, with a screenshot of each page that matters."""

    def __init__(self, page: Any, base_url: str, shot: Shot) -> None:
        self.page, self.base, self.shot = page, base_url, shot

    def open_tile(self) -> None:
        self.page.goto(self.base + "/sandbox/")
        self.shot("tile")

    def click_connect_accounts(self) -> None:
        self.page.click("#connect-accounts")

    def host_login(self, username: str) -> None:
        self.page.wait_for_selector("#id_username")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        self.shot("host-login")
        self.page.click("#log-in")

    def confirm(self) -> None:
        self.page.wait_for_selector("text=Continue to Datadog")
        self.shot("confirm")
        self.page.click("text=Continue to Datadog")
        self.page.wait_for_load_state()
        if "CSRF verification failed" in self.page.content():
            self.shot("csrf-refused")
            raise AssertionError(
                "The confirmation form's POST was refused by CSRF. A page served with "
                "Referrer-Policy: no-referrer (header or <meta>) makes Chromium send "
                "'Origin: null' on its same-origin form POSTs, which Django's CSRF check "
                "rejects; the confirmation page needs 'same-origin' (still no referrer to "
                "Datadog or any other site)."
            )

    def sandbox_login(self, name: str = "Ada on Datadog", org: str = "Acme on Datadog") -> None:
        """On the sandbox's sign-in page: pick the user if it exists, else create it."""
        self.page.wait_for_selector("text=Sign in to Datadog (sandbox)")
        existing = self.page.locator("button[name=user]", has_text=name)
        if existing.count():
            existing.first.click()
            return
        self.page.fill("#id_name", name)
        self.page.fill("#id_org_name", org)
        self.shot("sandbox-login")
        self.page.click("button[name=create]")

    def consent(self, *, approve: bool = True) -> None:
        self.page.wait_for_selector("#authorize")
        self.shot("consent")
        self.page.click("#authorize" if approve else "#deny")

    def connect(self, username: str) -> None:
        """Tile -> host login -> confirm -> sandbox sign-in -> consent -> connected page."""
        self.open_tile()
        self.click_connect_accounts()
        self.host_login(username)
        self.confirm()
        self.sandbox_login()
        self.consent()
        self.page.wait_for_selector("text=You may now close this tab.")
        self.shot("connected")
