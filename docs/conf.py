"""Sphinx configuration: the furo theme, autodoc, and the reference tables generated from
the code by ``_ext/ddp_reference.py``."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE / "_ext")]

os.environ["DJANGO_SETTINGS_MODULE"] = "docs_settings"
import django  # noqa: E402

django.setup()

_metadata = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

project = "django-datadog-partner"
author = "django-datadog-partner contributors"
copyright = f"the {author}"
release = _metadata["version"]
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "ddp_reference",
]

exclude_patterns = ["_build", "quickstart/*.py"]
templates_path: list[str] = []
html_theme = "furo"
html_title = f"{project} {release}"
html_static_path = ["_static"]
html_css_files = ["reference.css"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}

# Option names such as ``--all`` in generated text stay as typed, not en dashes.
smartquotes = False
