"""Helpers for the connect-flow tests: drive onboarding and the callback, fake Datadog."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
import responses
from django.contrib.auth.models import Permission
from django.test import Client

from django_datadog_partner.models import AuthorizationRequest
from django_datadog_partner.regions import get_site
from django_datadog_partner.sandbox.state import User
from django_datadog_partner.testing import FakeDatadog

ONBOARDING = "/datadog/connect/"
CALLBACK = "/datadog/callback/"
CONNECTED = "/datadog/connected/"
REDIRECT_URI = "https://vendor.example/datadog/callback/"
API_KEY = "0123456789abcdef0123456789abcdef"


@dataclass
class Started:
    """One confirmed onboarding: the authorize URL Datadog would get and its parameters."""

    url: str
    state: str
    challenge: str

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query))

    @property
    def row(self) -> AuthorizationRequest:
        return AuthorizationRequest.objects.get(state=self.state)


def start(
    client: Client, domain: str = "datadoghq.com", site: str = "app.datadoghq.com"
) -> Started:
    """Confirm the onboarding page for the user's first owner; return the authorize redirect."""
    url = f"{ONBOARDING}?{_qs(domain=domain, site=site)}"
    page = client.get(url)
    assert page.status_code == 200, page.content[:500]
    owner = page.context["choices"][0][0]
    response = client.post(url, {"owner": owner})
    assert response.status_code == 302, response.content[:500]
    location = response["Location"]
    query = parse_qs(urlsplit(location).query)
    return Started(url=location, state=query["state"][0], challenge=query["code_challenge"][0])


def through_datadog(
    client: Client,
    datadog: FakeDatadog,
    user: User,
    authorize_url: str,
    **tamper: str | None,
) -> Any:
    """Consent as Datadog ``user`` at ``authorize_url`` and follow Datadog's redirect to the
    callback, first changing its parameters as a browser could (None: drop one)."""
    redirect = urlsplit(datadog.authorize(authorize_url, user))
    params = dict(parse_qsl(redirect.query))
    params.update(tamper)  # type: ignore[arg-type]
    return client.get(CALLBACK + "?" + _qs(**{k: v for k, v in params.items() if v is not None}))


def connect_through(
    client: Client,
    datadog: FakeDatadog,
    user: User,
    **tamper: str | None,
) -> Any:
    """The whole flow from US1's tile: onboarding, consent as ``user``, callback."""
    return through_datadog(client, datadog, user, start(client).url, **tamper)


def callback(client: Client, state: str | None, code: str | None = "the-code", **extra: str) -> Any:
    params = {"code": code, "state": state, **extra}
    return client.get(CALLBACK + "?" + _qs(**{k: v for k, v in params.items() if v is not None}))


def token_json(
    access_token: str = "access-1", refresh_token: str = "refresh-1", **extra: object
) -> dict[str, object]:
    body: dict[str, object] = {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "bearer",
        "expires_in": 3600,
        "scope": "api_keys_write",
    }
    body.update(extra)
    return body


def key_json(
    key: str = API_KEY, key_id: str = "key-id-1", creator: str | None = None
) -> dict[str, object]:
    """The marketplace 201 body; ``creator``: the ``relationships.created_by`` user id."""
    data: dict[str, object] = {
        "type": "api_keys",
        "id": key_id,
        "attributes": {"key": key, "last4": key[-4:], "name": "OAuth Client API Key"},
    }
    if creator is not None:
        user = {"data": {"type": "users", "id": creator}}
        data["relationships"] = {"created_by": user, "modified_by": user}
    return {"data": data}


def api(domain: str, path: str) -> str:
    return get_site(domain).api_url + path


def fake_datadog(
    rsps: responses.RequestsMock,
    domain: str = "datadoghq.com",
    *,
    tokens: dict[str, object] | None = None,
    key: dict[str, object] | None = None,
) -> None:
    """A Datadog that accepts the code and creates the API key."""
    rsps.post(api(domain, "/oauth2/v1/token"), json=tokens or token_json())
    rsps.post(api(domain, "/api/v2/api_keys/marketplace"), json=key or key_json(), status=201)


def requests_made(rsps: responses.RequestsMock) -> list[tuple[str, str, str]]:
    """(method, host, path) of every request that reached the fake, in order."""
    made = []
    for call in rsps.calls:
        parts = urlsplit(str(call.request.url))
        made.append((str(call.request.method), parts.netloc, parts.path))
    return made


def token_form(rsps: responses.RequestsMock) -> dict[str, str]:
    (call,) = [c for c in rsps.calls if str(c.request.url).endswith("/oauth2/v1/token")]
    return dict(parse_qsl(str(call.request.body)))


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _qs(**params: str) -> str:
    return urlencode(params)


def make_user(django_user_model: Any, username: str = "alice", **extra: Any) -> Any:
    return django_user_model.objects.create_user(username=username, password="pw", **extra)


def with_permissions(user: Any, *codenames: str) -> Any:
    """``user`` granted the permissions ``codenames``, reloaded (no cached permissions)."""
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def signed_in_with(django_user_model: Any, username: str, *codenames: str, **extra: Any) -> Client:
    """A new user holding the permissions ``codenames``, signed in."""
    return signed_in(with_permissions(make_user(django_user_model, username, **extra), *codenames))


@pytest.fixture
def alice(django_user_model: Any) -> Any:
    """A user of the host product (password ``pw``); by default she is her own owner."""
    return make_user(django_user_model, "alice")
