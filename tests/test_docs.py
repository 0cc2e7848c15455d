"""The README's reference sections list every setting and every system check there is."""

from __future__ import annotations

import re
from pathlib import Path

from django_datadog_partner import checks
from django_datadog_partner.conf import PartnerSettings

README = (Path(__file__).resolve().parent.parent / "README.rst").read_text()


def section(title: str) -> str:
    start = README.index(f"\n{title}\n")
    following = re.search(r"\n[^\n]+\n=+\n", README[start + len(title) + 2 :])
    return README[start : start + len(title) + 2 + (following.start() if following else 0)]


def test_every_setting_is_in_the_settings_reference():
    names = [name for name in vars(PartnerSettings) if name.isupper()]
    reference = section("Settings reference")
    assert len(names) > 20
    missing = [name for name in names if f"``{name}``" not in reference]
    assert missing == []


def test_every_system_check_is_documented():
    source = Path(checks.__file__).read_text()
    ids = sorted(set(re.findall(r'id="datadog_partner\.([EW]0\d\d)"', source)))
    documented = section("System checks")
    assert len(ids) > 15
    listed = set(re.findall(r"``(?:datadog_partner\.)?([EW]0\d\d)``", documented))
    missing = [check_id for check_id in ids if check_id not in listed]
    assert missing == []
