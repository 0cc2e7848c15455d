"""A fake Datadog for host projects' test suites: no server, no tables, no network.

``FakeDatadog`` answers every Datadog site's API and logs hosts (and ``EXTRA_SITES``)
through ``responses`` (install the ``testing`` extra), with the sandbox's engine, so it
checks keys, tokens and bodies exactly as the sandbox does. It records what arrived,
injects faults and makes ready-to-use connections::

    @pytest.fixture
    def datadog():
        with FakeDatadog() as fake:
            yield fake

    def test_paid_order_reaches_datadog(datadog, organisation):
        connection = datadog.connection(owner=organisation)
        ...  # save an order, run the delivery
        assert datadog.events(connection)[0]["title"] == "Order 1 updated"

``make_connection`` saves a connection in any state without a fake (its tokens and key are
only strings: for tests that answer Datadog themselves, e.g. with ``responses``);
``FakeDatadog.connection`` builds on it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from django.contrib.auth import get_user_model
from django.db import models
from django.utils import timezone

from . import crypto
from .conf import app_settings
from .models import Connection, ConnectionStatus
from .regions import all_sites
from .sandbox.control import Sandbox
from .sandbox.engine import handle
from .sandbox.memory import MemoryStore
from .sandbox.state import Org, digest

try:
    import responses
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "django_datadog_partner.testing needs `responses`: "
        "pip install 'django-datadog-partner[testing]'"
    ) from exc


def make_connection(
    owner: models.Model | None = None,
    *,
    domain: str = "datadoghq.com",
    status: str = ConnectionStatus.ACTIVE,
    access_token: str | None = "at-old",  # noqa: S107 (a test value, never a real token)
    refresh_token: str | None = "rt-old",  # noqa: S107
    api_key: str | None = "",
    expires_in: int = 3600,
    **fields: Any,
) -> Connection:
    """A saved connection of ``owner`` in ``status``, on ``domain``'s site.

    ``owner`` defaults to a new user of the host's user model. ``api_key`` defaults to a
    random 32-hex key, so two connections never share one by accident (``None``: no key);
    its last 4 characters and fingerprint are set from it. Tokens expire ``expires_in``
    seconds from now (negative: already expired). ``site`` defaults to the domain's web URL
    (``https://app.<domain>`` for a domain this server does not know), ``dd_org_id`` to a
    random id, ``dd_org_name`` to "Acme"; any other model field can be passed.
    """
    site = all_sites().get(domain)
    fields.setdefault("site", site.web_url if site else f"https://app.{domain}")
    fields.setdefault("dd_org_id", secrets.token_hex(4))
    fields.setdefault("dd_org_name", "Acme")
    if api_key == "":
        api_key = secrets.token_hex(16)
    connection = Connection(domain=domain, status=status, **fields)
    connection.set_owner(owner if owner is not None else _new_user())
    connection.access_token = access_token
    connection.refresh_token = refresh_token
    connection.api_key = api_key
    if api_key:
        connection.api_key_last4 = crypto.last4(api_key)
        connection.api_key_fingerprint = crypto.fingerprint(api_key)
    connection.expires_at = timezone.now() + timedelta(seconds=expires_in)
    connection.save()
    return connection


def _new_user() -> models.Model:
    user_model = get_user_model()
    name = "owner-" + secrets.token_hex(4)
    return user_model._default_manager.create(**{user_model.USERNAME_FIELD: name})


@dataclass(frozen=True)
class Call:
    """One request the fake answered (headers and body included: tests only)."""

    method: str
    url: str
    domain: str
    path: str
    status: int
    headers: dict[str, str]
    body: bytes


class FakeDatadog(Sandbox):
    """The sandbox engine on a ``MemoryStore``, answering through ``responses``.

    ``domain`` is the default site for new orgs and connections. Pass ``mock`` to add the
    fake to a ``responses.RequestsMock`` you already use; otherwise ``start()`` (or
    ``with``) creates one where every other request fails. Injected ``slow_seconds`` never
    sleep: at or above the read timeout they raise ``requests.ReadTimeout``.
    """

    def __init__(
        self, domain: str = "datadoghq.com", *, mock: responses.RequestsMock | None = None
    ) -> None:
        super().__init__(MemoryStore(), domain=domain)
        self.calls: list[Call] = []
        self.delays: list[float] = []
        self._own_mock = mock is None
        self.mock = mock or responses.RequestsMock(assert_all_requests_are_fired=False)
        self._keys: dict[int, str] = {}
        self._orgs: dict[int, Org] = {}
        self._register()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeDatadog:
        if self._own_mock:
            self.mock.start()
        return self

    def stop(self) -> None:
        if self._own_mock:
            self.mock.stop()
            self.mock.reset()

    def __enter__(self) -> FakeDatadog:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _register(self) -> None:
        bases: dict[str, str] = {}
        for site in all_sites().values():
            for url in (site.api_url, site.logs_url, site.web_url):
                bases.setdefault(url.rstrip("/"), site.domain)
        for base, domain in sorted(bases.items(), key=lambda item: -len(item[0])):
            pattern = re.compile(re.escape(base) + r"(/[^?#]*)?(\?.*)?$")
            for method in ("GET", "POST"):
                self.mock.add_callback(method, pattern, callback=self._answerer(base, domain))

    def _answerer(self, base: str, domain: str) -> Any:
        def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
            url = request.url or ""
            parts = urlsplit(url)
            path = parts.path[len(urlsplit(base).path) :] or "/"
            body = request.body or b""
            data = body.encode() if isinstance(body, str) else bytes(body)
            headers = dict(request.headers)
            result = handle(
                request.method or "GET",
                path,
                headers,
                data,
                dict(parse_qsl(parts.query)),
                store=self.store,
                domain=domain,
                sleep=self._sleep,
            )
            self.calls.append(
                Call(request.method or "", url, domain, path, result.status, headers, data)
            )
            return result.status, result.headers, result.body

        return answer

    def _sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        if seconds >= app_settings.HTTP_TIMEOUT[1]:
            raise requests.ReadTimeout(f"The fake Datadog was told to answer in {seconds}s.")

    # --- factories ----------------------------------------------------------------------

    def connection(
        self,
        owner: models.Model,
        *,
        domain: str | None = None,
        org: Org | None = None,
        status: str = ConnectionStatus.ACTIVE,
        **fields: Any,
    ) -> Connection:
        """A saved connection of ``owner`` whose tokens and API key this fake accepts.

        Its org is confirmed (``dd_org_id`` is the org's UUID), as after a connect that got
        a new key; one owner has one connection per org. Connections of several owners to
        the same ``org`` hold its one key, a state the connect flow never creates (it lends
        no key).
        """
        domain = domain or (org.domain if org and org.domain else self.domain)
        org = org or self.create_org(f"{owner} org", domain=domain)
        grant = self.grant(org)
        if org.id not in self._keys:
            self._keys[org.id] = self.create_api_key(org)
        key = self._keys[org.id]
        info = self.store.find_key(digest(key))
        connection = make_connection(
            owner,
            domain=domain,
            status=status,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            api_key=key,
            expires_in=grant.expires_in,
            dd_org_id=org.public_id,
            dd_org_name=org.name,
            scopes=grant.scopes,
            api_key_id=info.key_id if info else "",
            **fields,
        )
        self._orgs[connection.pk] = org
        return connection

    def org_of(self, connection: Connection) -> Org:
        """The fake org behind a connection made by :meth:`connection`."""
        return self._orgs[connection.pk]

    def org_id(self, org: Org | Connection | None) -> int | None:
        if isinstance(org, Connection):
            return self.org_of(org).id
        return super().org_id(org)


__all__ = ["Call", "FakeDatadog", "make_connection"]
