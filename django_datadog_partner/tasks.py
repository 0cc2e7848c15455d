"""django-q2 entry points. Thin: they take ids only (never secrets) and call the operations."""

from __future__ import annotations
