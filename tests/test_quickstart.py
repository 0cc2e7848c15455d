"""The quickstart, followed literally: a fresh ``startproject``, the snippets the docs
include (``docs/quickstart/``), the package installed from this checkout, then a
connection and one delivered event against the sandbox through ``runserver`` and
``qcluster``, driven over HTTP as the browser would.

The package is installed as a user installs it, not editable: into a fresh virtualenv
with ``pip install --no-deps <checkout>`` (Django, django-q2 and the other dependencies
come from this environment through a ``.pth`` file, so nothing is downloaded for them).
When the suite already runs against an installed wheel (``make wheel-test``), that
interpreter is used as it is.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SNIPPETS = ROOT / "docs" / "quickstart"
QUICKSTART = ROOT / "docs" / "quickstart.rst"
PASSWORD = "quickstart-pw-1"
TEST_EVENT = "Test event from the Datadog integration"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python_with_the_package(tmp_path: Path) -> str:
    """An interpreter that imports the package from an installed copy."""
    import django_datadog_partner

    if "site-packages" in django_datadog_partner.__file__:
        return sys.executable
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True
    ).strip()
    Path(purelib, "_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
         str(ROOT)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return python


def clean_environment(port: int, key: str = "") -> dict[str, str]:
    """The shell of a new user: none of the test suite's settings, this run's BASE_URL."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATADOG_", "DDP_", "PYTHON"))
        and k not in ("DATABASE_URL", "REDIS_URL", "TEST_DB_SUFFIX")
    }
    env["BASE_URL"] = f"http://127.0.0.1:{port}"
    if key:
        env["DATADOG_PARTNER_ENCRYPTION_KEYS"] = key
    return env


class Project:
    def __init__(self, python: str, path: Path, env: dict[str, str]) -> None:
        self.python, self.path, self.env = python, path, env

    def manage(self, *args: str, documented: bool = True) -> str:
        """``python manage.py ...``, as the quickstart says (options aside); its output."""
        command = " ".join(("python manage.py", *args))
        if documented:
            assert command.split(" --")[0] in QUICKSTART_TEXT, f"{command!r} is not in the docs"
        done = subprocess.run(
            [self.python, "manage.py", *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    @contextmanager
    def running(self, *args: str) -> Iterator[subprocess.Popen[bytes]]:
        log = (self.path / f"{args[0]}.log").open("wb")
        process = subprocess.Popen(
            [self.python, "manage.py", *args],
            cwd=self.path,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            log.close()

    def log(self, name: str) -> str:
        return (self.path / f"{name}.log").read_text(errors="replace")[-3000:]


QUICKSTART_TEXT = QUICKSTART.read_text()


def form_fields(page: str) -> dict[str, str]:
    """The hidden inputs of a page's first form (CSRF token, ``next``, ``owner``)."""
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    }


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def post_form(
    browser: requests.Session, response: requests.Response, **extra: str
) -> requests.Response:
    """Submit the page's form (its action is the page itself), as a browser does."""
    answer = browser.post(response.url, data={**form_fields(response.text), **extra}, timeout=10)
    assert answer.status_code == 200, (answer.status_code, answer.url, what_failed(answer.text))
    return answer


def what_failed(page: str) -> str:
    """The title and exception of Django's technical 500 page (the rest is CSS), else the
    page's start."""
    found = re.findall(
        r"<title>(.*?)</title>|<pre class=\"exception_value\">(.*?)</pre>", page, re.S
    )
    return (
        " / ".join(html.unescape(part).strip() for pair in found for part in pair if part)
        or page[:800]
    )


def connect_from_the_tile(base_url: str) -> str:
    """Quickstart step "Connect": tile, sign in, confirm, sandbox user, Authorize."""
    browser = requests.Session()
    tile = browser.get(f"{base_url}/sandbox/", timeout=10)
    link = re.search(r'id="connect-accounts" href="([^"]+)"', tile.text)
    assert link, tile.text[:2000]
    login = browser.get(html.unescape(link[1]), timeout=10)
    assert "/admin/login/" in login.url, login.url
    confirm = post_form(browser, login, username="admin", password=PASSWORD)
    assert "Connect admin to Datadog" in confirm.text, confirm.text[:2000]
    sandbox_login = post_form(browser, confirm)
    assert "/sandbox/login/" in sandbox_login.url, sandbox_login.url
    consent = browser.post(
        sandbox_login.url,
        data={**form_fields(sandbox_login.text), "create": "1", "name": "Dana", "org_name": "Acme"},
        timeout=10,
    )
    assert "Authorize" in consent.text, consent.text[:2000]
    connected = post_form(browser, consent, authorize="1")
    assert "You may now close this tab" in connected.text, connected.text[:2000]
    return connected.text


def test_the_quickstart_connects_and_delivers_an_event(tmp_path: Path) -> None:
    started = time.monotonic()
    python = python_with_the_package(tmp_path)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    project_dir = tmp_path / "mysite"
    project_dir.mkdir()
    subprocess.run(
        [python, "-m", "django", "startproject", "mysite", str(project_dir)],
        check=True,
        env=clean_environment(port),
    )
    settings_file = project_dir / "mysite" / "settings.py"
    settings_file.write_text(
        settings_file.read_text() + "\n\n" + (SNIPPETS / "settings.py").read_text()
    )
    (project_dir / "mysite" / "urls.py").write_text((SNIPPETS / "urls.py").read_text())

    key = subprocess.check_output(
        [python, "-m", "django_datadog_partner.crypto"], env=clean_environment(port), text=True
    ).strip()
    project = Project(python, project_dir, clean_environment(port, key))
    installed = project.manage(
        "shell", "-c", "import django_datadog_partner as p; print(p.__file__)", documented=False
    )
    assert str(ROOT / "django_datadog_partner") not in installed, installed

    project.manage("migrate")
    assert "no issues" in project.manage("check")
    project.manage("datadog_partner_schedule")
    assert "no issues" in project.manage(
        "check", "--database", "default", "--fail-level", "WARNING"
    )
    project.env["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD
    project.manage(
        "createsuperuser", "--noinput", "--username", "admin", "--email", "a@example.com"
    )

    with (
        project.running("runserver", f"127.0.0.1:{port}", "--noreload"),
        project.running("qcluster"),
    ):
        wait_for(f"{base_url}/sandbox/")
        try:
            connect_from_the_tile(base_url)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nrunserver's log:\n{project.log('runserver')}") from exc
        status = json.loads(project.manage("datadog_partner_status", "--json"))
        (connection,) = status["connections"]
        assert connection["status"] == "active", connection
        project.manage("datadog_partner_send_test_event", str(connection["id"]))
        deadline = time.monotonic() + 30
        while TEST_EVENT not in requests.get(f"{base_url}/sandbox/orgs/1/", timeout=10).text:
            assert time.monotonic() < deadline, project.log("qcluster")
            time.sleep(0.3)
    print(f"quickstart: {time.monotonic() - started:.1f} s")
