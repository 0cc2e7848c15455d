"""The browser tests skip with a visible reason without Chromium, except in CI where
``DDP_REQUIRE_BROWSER=1`` makes them fail instead (tests/browser/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser import conftest as gate


class Item:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.markers: list[Any] = []

    def add_marker(self, marker: Any) -> None:
        self.markers.append(marker)


def collect(monkeypatch: pytest.MonkeyPatch, *, chromium: Path, required: bool) -> Item:
    monkeypatch.setattr(gate, "CHROMIUM", chromium)
    if required:
        monkeypatch.setenv("DDP_REQUIRE_BROWSER", "1")
    else:
        monkeypatch.delenv("DDP_REQUIRE_BROWSER", raising=False)
    item = Item(gate.HERE / "test_journeys.py")
    outside = Item(gate.HERE.parent / "test_regions.py")
    gate.pytest_collection_modifyitems(None, [item, outside])  # type: ignore[arg-type, list-item]
    assert outside.markers == []
    return item


def names(item: Item) -> list[str]:
    return [marker.mark.name for marker in item.markers]


def test_missing_chromium_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    item = collect(monkeypatch, chromium=Path("/nonexistent/chromium"), required=False)
    assert names(item) == ["browser", "skip"]
    assert "/nonexistent/chromium is missing" in item.markers[1].mark.kwargs["reason"]


def test_missing_chromium_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    item = collect(monkeypatch, chromium=Path("/nonexistent/chromium"), required=True)
    assert names(item) == ["browser"]
    with pytest.raises(pytest.fail.Exception, match="DDP_REQUIRE_BROWSER=1 but"):
        next(gate.chromium.__wrapped__())  # type: ignore[attr-defined]


def test_present_chromium_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.touch()
    assert names(collect(monkeypatch, chromium=fake, required=False)) == ["browser"]
