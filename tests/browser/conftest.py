"""Browser tests: Playwright driving Debian's Chromium against the live test server.

Without ``/usr/bin/chromium`` (or Playwright) every test here is skipped with the reason,
unless ``DDP_REQUIRE_BROWSER=1`` (CI): then they fail, so CI cannot go green without them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django.contrib.admin
import pytest
from django.contrib.auth import get_user_model

import django_datadog_partner
from django_datadog_partner.sandbox import SANDBOX_DOMAIN, site_entry
from tests.e2e_support import QCluster, start_qcluster
from tests.testapp.models import Organization

from .support import PASSWORD, VIEWPORT, Journey, Shot

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HERE = Path(__file__).resolve().parent
SCREENSHOTS = HERE.parent.parent / "test-artifacts" / "screenshots"
QCLUSTER_LOG = HERE.parent.parent / "test-artifacts" / "browser-qcluster.log"


def browser_missing() -> str:
    """Why the browser tests cannot run here ("" when they can)."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (install it: sudo make browser-deps)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    return ""


def browser_required() -> bool:
    return os.environ.get("DDP_REQUIRE_BROWSER") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = browser_missing()
    for item in items:
        if HERE not in Path(str(item.path)).parents:
            continue
        item.add_marker(pytest.mark.browser)
        if reason and not browser_required():
            item.add_marker(pytest.mark.skip(reason=f"browser tests skipped: {reason}"))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    reason = browser_missing()
    if reason:
        pytest.fail(f"DDP_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread, which Django's ORM takes
    # for an async context; the test code is synchronous, so allow it for these tests only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = chromium.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        Shot(page, request.node.name).take("failure")
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def shot(page: Any, request: pytest.FixtureRequest) -> Shot:
    """``shot("consent")`` saves test-artifacts/screenshots/<test>-<n>-consent.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return Shot(page, request.node.name, SCREENSHOTS)


@pytest.fixture
def dd_live(live_server: Any, settings: Any, partner_settings: Any, static_root: Path) -> str:
    """The live server as vendor (``BASE_URL``) and as the sandbox "Datadog" site."""
    partner_settings(
        BASE_URL=live_server.url,
        EXTRA_SITES={SANDBOX_DOMAIN: site_entry(live_server.url + "/sandbox")},
        OWNERS_FOR_USER="tests.browser.support.organizations_of",
    )
    # The live server serves STATIC_URL from STATIC_ROOT: the admin's files and the app's.
    settings.STATIC_ROOT = str(static_root)
    return str(live_server.url)


@pytest.fixture(scope="session")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A STATIC_ROOT of links to the admin's and the app's static folders."""
    root = tmp_path_factory.mktemp("static")
    admin = Path(django.contrib.admin.__file__).parent / "static" / "admin"
    package = Path(django_datadog_partner.__file__).parent / "static" / "datadog_partner"
    (root / "admin").symlink_to(admin)
    (root / "datadog_partner").symlink_to(package)
    return root


@pytest.fixture(scope="module")
def qcluster(live_server: Any, django_db_setup: None) -> Iterator[QCluster]:
    """A real ``qcluster`` on the test database, delivering to the live sandbox.

    Module-scoped: it must be gone before other modules start their own clusters, which
    share the broker's queue.
    """
    QCLUSTER_LOG.parent.mkdir(parents=True, exist_ok=True)
    sandbox = {SANDBOX_DOMAIN: site_entry(live_server.url + "/sandbox")}
    cluster = start_qcluster(QCLUSTER_LOG, partner_settings={"EXTRA_SITES": sandbox})
    yield cluster
    cluster.stop()


@pytest.fixture
def ada(acme: Organization) -> Any:
    """A member of Acme, who connects it."""
    user = get_user_model().objects.create_user("ada", password=PASSWORD)
    acme.members.add(user)
    return user


@pytest.fixture
def journey(page: Any, dd_live: str, shot: Shot, ada: Any) -> Journey:
    page.set_viewport_size(VIEWPORT)
    return Journey(page, dd_live, shot)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if SCREENSHOTS.exists() and not any(SCREENSHOTS.iterdir()):
        shutil.rmtree(SCREENSHOTS, ignore_errors=True)
