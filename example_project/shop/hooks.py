"""The ``OWNERS_FOR_USER`` hook: a user connects the organisations they belong to."""

from typing import Any

from .models import Organisation


def organisations_of(user: Any) -> list[Organisation]:
    return list(Organisation.objects.filter(members=user).order_by("name"))
