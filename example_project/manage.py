#!/usr/bin/env python
"""The example shop's manage.py (run from anywhere: ``python example_project/manage.py``)."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    # A checkout without `pip install -e .` still finds django_datadog_partner.
    sys.path.append(str(here.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
