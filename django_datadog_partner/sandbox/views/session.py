"""Who is signed in to the sandbox ("Datadog"), kept apart from the host's own login."""

from __future__ import annotations

from django.http import HttpRequest

from ..models import SandboxUser
from ..state import Store

SESSION_KEY = "datadog_partner_sandbox_user"


def current_user(request: HttpRequest) -> SandboxUser | None:
    user_id = request.session.get(SESSION_KEY)
    if user_id is None:
        return None
    return SandboxUser.objects.select_related("org").filter(pk=user_id).first()


def sign_in(request: HttpRequest, user: SandboxUser) -> None:
    request.session[SESSION_KEY] = user.pk


def sign_out(request: HttpRequest) -> None:
    request.session.pop(SESSION_KEY, None)


def orm_store() -> Store:
    from ..store import OrmStore

    return OrmStore()
