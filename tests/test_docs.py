"""The docs site's generated reference lists every setting, system check and command there
is; the docs' Python examples run; README.rst is a short front page that points into them."""

from __future__ import annotations

import ast
import doctest
import re
from pathlib import Path

import pytest

from django_datadog_partner import checks
from django_datadog_partner.conf import PartnerSettings
from docs._ext import ddp_inventory as inventory

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text()


# --- README.rst, the front page -----------------------------------------------------------


def test_the_readme_is_a_short_front_page_naming_the_two_commands():
    assert len(README.splitlines()) < 150
    assert "make demo" in README and "make test" in README
    # CI runs the test command the front page names.
    assert re.search(r"^make test\b", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)


def test_the_readme_links_and_image_point_at_files_that_exist():
    targets = re.findall(r"`[^`<]+<([^>]+)>`_", README)
    targets += re.findall(r"^\.\. image:: (\S+)", README, re.MULTILINE)
    relative = [target for target in targets if "://" not in target]
    assert len(relative) > 10
    assert [target for target in relative if not (ROOT / target).is_file()] == []


def test_the_readme_python_snippets_parse():
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", README)
    assert blocks
    for block in blocks:
        ast.parse("\n".join(line[4:] for line in block.splitlines()))


def test_the_readme_renders_on_the_package_index_with_its_screenshot():
    """readme_renderer is what ``twine check`` and the package index use."""
    import io

    rst = pytest.importorskip("readme_renderer.rst")
    warnings = io.StringIO()
    html = rst.render(README, stream=warnings)
    assert html is not None, warnings.getvalue()
    assert '<img alt="The admin' in html and "docs/_static/screenshots/" in html


def test_every_docs_page_the_package_names_exists():
    """Check hints and docstrings send readers to docs pages: those pages must exist."""
    named = set()
    for module in PACKAGE.rglob("*.py"):
        text = module.read_text()
        named |= set(re.findall(r"docs/([\w/-]+)\.rst", text))
        named |= set(re.findall(r'\bsee\("([\w/-]+)"', text))
    assert "reference/settings" in named and "howto/stuck-revoking" in named
    assert sorted(name for name in named if not (DOCS / f"{name}.rst").is_file()) == []


# --- The documentation site (docs/) --------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = {
    path: path.read_text() for path in sorted(DOCS.rglob("*.rst")) if "_build" not in path.parts
}
PACKAGE = Path(checks.__file__).resolve().parent


def reference_page(name: str) -> str:
    return (DOCS / "reference" / f"{name}.rst").read_text()


def test_every_setting_is_in_the_docs_reference_with_its_release():
    names = [name for name in vars(PartnerSettings) if name.isupper()]
    documented = {setting.name: setting for setting in inventory.settings()}
    assert ".. ddp-settings::" in reference_page("settings")
    assert sorted(documented) == sorted(names)
    assert [name for name, s in documented.items() if not s.since] == []
    prose = reference_page("settings")
    unexplained = [n for n, s in documented.items() if not s.doc and f"\n   {n}\n" not in prose]
    assert unexplained == []


def test_every_check_id_in_the_package_is_in_the_docs_reference():
    """Ids found by reading every module, so a check the registry scan misses fails here."""
    written = set()
    for module in PACKAGE.rglob("*.py"):
        written |= set(re.findall(r'id="(datadog_partner\.[CEWI]\d{3})"', module.read_text()))
    assert len(written) > 15
    assert ".. ddp-checks::" in reference_page("checks")
    assert sorted(check.id for check in inventory.checks()) == sorted(written)


def test_every_command_is_in_the_docs_reference_with_its_options():
    files = sorted(
        path.stem
        for path in (PACKAGE / "management" / "commands").glob("*.py")
        if path.stem != "__init__"
    )
    assert ".. ddp-commands::" in reference_page("commands")
    commands = inventory.commands()
    assert [command.name for command in commands] == files
    revoke = next(c for c in commands if c.name == "datadog_partner_revoke")
    assert inventory.synopsis(revoke).endswith("[ID …] [--reason REASON] [--local-only]")
    assert any("not both" in failure for failure in revoke.failures)


def test_signals_failure_reasons_and_statuses_are_generated_pages():
    from django_datadog_partner import signals

    names = [name for name, value in vars(signals).items() if isinstance(value, signals.Signal)]
    assert [s.name for s in inventory.signals()] == names
    assert all(s.arguments for s in inventory.signals())
    assert ".. ddp-signals::" in reference_page("signals")
    assert ".. ddp-failures::" in reference_page("failures")
    statuses = reference_page("statuses")
    for enum in ("ConnectionStatus", "OutboxStatus"):
        assert f".. ddp-choices:: django_datadog_partner.models.{enum}" in statuses


def test_cross_references_in_the_docs_name_things_that_exist():
    known = {
        "setting": {s.name for s in inventory.settings()},
        "check": {c.id for c in inventory.checks()},
        "command": {c.name for c in inventory.commands()},
        "reason": {f.reason for f in inventory.failures()},
        "status": {
            v for v, _ in inventory.choices("django_datadog_partner.models.ConnectionStatus")
        },
        "signal": {s.name for s in inventory.signals()},
    }
    unknown = [
        (path.name, role, name)
        for path, text in PAGES.items()
        for role, name in re.findall(
            r":(setting|check|command|reason|status|signal):`([^`<]+)`", text
        )
        if name not in known[role]
    ]
    assert unknown == []


@pytest.mark.parametrize(
    "page", [path for path, text in PAGES.items() if ">>> " in text], ids=lambda p: p.name
)
def test_python_examples_in_the_docs_run(page: Path):
    result = doctest.testfile(
        str(page),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} example(s) in {page.name} failed (see stdout)"


@pytest.mark.parametrize("name", ["README.rst", "CHANGELOG.rst"])
def test_the_front_pages_render_as_the_package_index_would(name: str):
    """reStructuredText errors make the package index refuse the long description."""
    import io

    import docutils.core

    warnings = io.StringIO()
    docutils.core.publish_doctree(
        (ROOT / name).read_text(),
        settings_overrides={"warning_stream": warnings, "report_level": 2, "halt_level": 5},
    )
    assert warnings.getvalue() == ""


def test_every_screenshot_the_docs_show_is_committed_and_small():
    """The browser tests write them (``DDP_UPDATE_SCREENSHOTS=1``); the docs show them."""
    docs = ROOT / "docs"
    shown = {
        Path(target).name
        for page in docs.rglob("*.rst")
        for target in re.findall(r"\.\. image:: /?_static/screenshots/(\S+)", page.read_text())
    }
    committed = {
        path.name: path.stat().st_size for path in (docs / "_static" / "screenshots").glob("*.png")
    }
    assert shown and shown == set(committed)
    assert all(size < 250_000 for size in committed.values()), committed
