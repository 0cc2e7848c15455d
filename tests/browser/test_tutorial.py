"""The tutorial, step by step, in Chromium against ``make demo``'s example shop: the
integration's pages in the shop's layout, the shop saying what it sent, the event as the
sandbox received it. Its screenshots are the tutorial's."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_example_project import DEMO, demo_env, free_port, read_until

from .support import VIEWPORT, docs_shot, eventually, layout_problems


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """The demo on a free port with its own database; its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(DEMO)],
        env=demo_env(tmp_path, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_until(process, "Admin:")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


def sign_in(page: Any, username: str) -> None:
    page.wait_for_selector("#id_username")
    page.fill("#id_username", username)
    page.fill("#id_password", f"{username}-demo")
    page.click("#log-in")


def message(page: Any) -> str:
    return str(page.inner_text(".messages")).strip()


def test_the_tutorial_in_the_example_shop(page: Any, demo: str) -> None:
    page.set_viewport_size(VIEWPORT)
    page.goto(f"{demo}/sandbox/")
    page.click("#connect-accounts")
    sign_in(page, "bob")

    # The confirmation in the shop's layout (its datadog_partner/base.html), with the
    # package's stylesheet still styling the package's own elements.
    page.wait_for_selector("text=Continue to Datadog")
    assert page.inner_text("header strong") == "Example shop"
    assert page.locator("link[href$='datadog_partner/partner.css']").count() == 1
    assert page.inner_text("h1") == "Connect to Datadog Sandbox?"  # bob picks one of two
    page.check("label:has-text('Acme Shop') input")
    docs_shot(page, "tutorial-confirm", full_page=False)
    page.click("text=Continue to Datadog")

    # Signed in to the shop, not to the sandbox: the sandbox's header offers its sign-in.
    page.wait_for_selector("text=Sign in to Datadog (sandbox)")
    assert page.inner_text("header .who").strip() == "Sign in"
    page.click("button[name=user]:has-text('Dana (Datadog admin)')")
    page.wait_for_selector("#authorize")
    page.click("#authorize")
    page.wait_for_selector("text=You may now close this tab.")
    assert page.inner_text("h1") == "Acme Shop is connected to Datadog"
    assert "Datadog organisation: ‘Acme on Datadog’ (Sandbox)" in page.inner_text("main")
    assert page.inner_text("header strong") == "Example shop"
    docs_shot(page, "tutorial-connected", full_page=False)

    page.goto(f"{demo}/")
    page.click("text=A-1001")
    page.click("#pay")
    page.wait_for_selector(".messages")
    assert message(page) == (
        "Payment of 120.00 taken: Order A-1001 is now Paid. Acme Shop's Datadog receives "
        "an event, the metric example_shop.payment.amount and a log."
    )
    assert page.inner_text("#status") == "Paid"
    docs_shot(page, "tutorial-paid", full_page=False)

    page.goto(f"{demo}/orders/new/")
    page.fill("input[name=customer]", "Katherine Johnson")
    page.fill("input[name=number]", "A-1003")
    page.fill("input[name=total]", "15.50")
    page.click("#create-order")
    page.wait_for_selector(".messages")
    assert message(page) == (
        "Order A-1003 created for Katherine Johnson (15.50). Acme Shop's Datadog receives an event."
    )

    def events() -> str:
        page.goto(f"{demo}/sandbox/orgs/")
        page.locator("main a", has_text="Acme on Datadog").first.click()
        shown = str(page.inner_text("table[data-kind=events]"))
        return shown if "Order created: A-1003" in shown else ""

    shown = eventually(events, "the shop's events in the sandbox", timeout=60)
    assert "Order updated: A-1001" in shown and "Order A-1001" not in shown
    assert "customer: Ada Lovelace" in shown and "customer: Katherine Johnson" in shown
    docs_shot(page, "tutorial-sandbox-events", full_page=False)

    # The admin, as alice: the dashboard counts the connection and what was delivered.
    page.context.clear_cookies()
    page.goto(f"{demo}/accounts/login/?next=/admin/")
    sign_in(page, "alice")
    page.click("text=Status dashboard")
    page.wait_for_selector(".ddp-dashboard")
    assert page.locator(".ddp-counts a:has-text('Active')").count() == 1
    assert layout_problems(page) == []
