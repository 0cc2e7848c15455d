"""Several tenants on one host and several orgs at one fake Datadog, for the isolation tests.

A ``World`` holds host owners (``Organization``), host users with their memberships (the
``OWNERS_FOR_USER`` hook reads them), Datadog orgs on their sites, and the Datadog accounts
each person can sign in with. Everything goes through public behaviour only: the user's
browser is a Django test client on the package's pages, consent happens at the fake
Datadog (``FakeDatadog``, through ``responses``), telemetry is a tracked save plus
``send_metric``/``send_log`` delivered by ``delivery.drain()``, and what reached Datadog is
read back from the fake's store.

``World.authorized`` is the ground truth the package is judged against: the Datadog orgs a
member of each owner really consented to for that owner (the org of the account that
signed in at Datadog, whatever the callback's parameters claim). Consents by people who
were not members at the callback are kept apart, to say who caused a crossing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test import Client

from django_datadog_partner import delivery
from django_datadog_partner.models import Connection, ConnectionStatus
from django_datadog_partner.regions import get_site
from django_datadog_partner.sandbox.control import Sandbox
from django_datadog_partner.sandbox.state import Org, digest
from django_datadog_partner.testing import FakeDatadog
from django_datadog_partner.tracking import send_log, send_metric
from tests.testapp.models import Order, Organization

ONBOARDING = "/datadog/connect/"
#: The one web host where a user may switch to another region before consenting.
SWITCHING_HOST = "app.datadoghq.com"
#: ``t.<owner>.<n>`` survives tag normalisation (lower case, no ``#``): owner names are
#: lower-case words.
MARKER = re.compile(r"\bt\.([a-z]+)\.\d+\b")


@dataclass(frozen=True)
class Person:
    """A host user: the owners they belong to and the Datadog orgs they can sign in to."""

    name: str
    owners: tuple[str, ...]
    accounts: tuple[str, ...]
    staff: bool = False


@dataclass(frozen=True)
class Arrival:
    """One item that reached the fake Datadog, and the owner whose data it is."""

    owner: str
    kind: str
    org_id: int
    label: str


@dataclass(frozen=True)
class Crossing:
    """Data or a key of ``owner`` at an org none of its members consented to.

    ``by`` names who did consent to that org for the owner without being a member at the
    callback (``staff sam``, ``ex-member ana``, ``outsider bo``); empty when nobody did.
    """

    owner: str
    kind: str  # event, metric, log or key
    text: str
    by: frozenset[str]

    @property
    def cause(self) -> str:
        """``unconsented``, ``ex-member`` (removed during the flow) or ``non-member``."""
        if not self.by:
            return "unconsented"
        return "ex-member" if all(r.startswith("ex-member") for r in self.by) else "non-member"

    def __str__(self) -> str:
        return self.text


class Browser:
    """One host user's browser: a signed-in test client that remembers every 5xx."""

    def __init__(self, user: Any, server_errors: list[str]) -> None:
        self.user = user
        self.client = Client(raise_request_exception=False)
        self.client.force_login(user)
        self.server_errors = server_errors

    def get(self, url: str) -> Any:
        return self._seen("GET", url, self.client.get(url))

    def post(self, url: str, data: dict[str, str] | None = None) -> Any:
        return self._seen("POST", url, self.client.post(url, data or {}))

    def _seen(self, method: str, url: str, response: Any) -> Any:
        if response.status_code >= 500:
            self.server_errors.append(f"{method} {urlsplit(url).path} -> {response.status_code}")
        return response

    def onboard(self, domain: str, site: str, owner: Organization) -> str | None:
        """Confirm the onboarding page for ``owner``; the authorize URL, or None if refused."""
        url = ONBOARDING + "?" + urlencode({"domain": domain, "site": site})
        if self.get(url).status_code != 200:
            return None
        return to_datadog(self.post(url, {"owner": choice_value(owner)}))

    def come_back(self, callback_url: str) -> Any:
        """Follow Datadog's redirect to the callback, then the page it leads to."""
        parts = urlsplit(callback_url)
        response = self.get(f"{parts.path}?{parts.query}")
        if response.status_code == 302 and response["Location"].startswith("/"):
            self.get(response["Location"])
        return response


def to_datadog(response: Any) -> str | None:
    """The Datadog URL a response redirects the browser to, else None."""
    location = response.get("Location", "") if response.status_code == 302 else ""
    return location if location.startswith("https://") else None


def choice_value(owner: Organization) -> str:
    """The onboarding form's value for ``owner`` (content type id and primary key)."""
    return f"{ContentType.objects.get_for_model(owner).pk}:{owner.pk}"


def forge(callback_url: str, **params: str) -> str:
    """The callback URL with some parameters replaced, as an attacker edits their own."""
    base, _sep, query = callback_url.partition("?")
    return base + "?" + urlencode({**dict(parse_qsl(query)), **params})


@dataclass
class Cast:
    """The host's owners and people, and each person's signed-in browser.

    Built once per test; a run's changes (memberships, sessions) live in a savepoint the
    run rolls back, so every run starts from the same cast.
    """

    people: dict[str, Person]
    owners: dict[str, Organization]
    users: dict[str, Any]
    browsers: dict[str, Browser]
    server_errors: list[str]

    @classmethod
    def build(cls, owners: tuple[str, ...], people: tuple[Person, ...]) -> Cast:
        made_owners = {name: Organization.objects.create(name=name) for name in owners}
        users = {}
        for person in people:
            user = get_user_model().objects.create_user(
                username=person.name, password="pw", is_staff=person.staff
            )
            user.organizations.add(*(made_owners[owner] for owner in person.owners))
            users[person.name] = user
        errors: list[str] = []
        browsers = {name: Browser(user, errors) for name, user in users.items()}
        return cls({p.name: p for p in people}, made_owners, users, browsers, errors)


@dataclass
class World:
    """One run: the cast, a fresh fake Datadog with its orgs, and the ground truth."""

    cast: Cast
    fake: FakeDatadog
    orgs: dict[str, Org]
    accounts: dict[tuple[str, str], Any]
    #: Pages that let a non-member manage an owner's connection (they must answer 404).
    trespasses: list[str] = field(default_factory=list)
    authorized: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    #: (owner, org) -> who consented to that org for the owner without being a member.
    outsiders: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    #: The org each owner's members consented to last: what an attacker would impersonate.
    last_org: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, cast: Cast, orgs: dict[str, str]) -> World:
        """A fake Datadog with ``orgs`` (name -> site domain) and the cast's accounts."""
        fake = FakeDatadog().start()
        made = {name: fake.create_org(name, domain=domain) for name, domain in orgs.items()}
        accounts = {
            (person.name, org): fake.create_user(made[org], person.name)
            for person in cast.people.values()
            for org in person.accounts
        }
        cast.server_errors.clear()
        return cls(cast, fake, made, accounts)

    @property
    def owners(self) -> dict[str, Organization]:
        return self.cast.owners

    @property
    def browsers(self) -> dict[str, Browser]:
        return self.cast.browsers

    @property
    def server_errors(self) -> list[str]:
        return self.cast.server_errors

    def close(self) -> None:
        self.fake.stop()

    # --- people -------------------------------------------------------------------------

    def is_member(self, user: str, owner: str) -> bool:
        return self.owners[owner].members.filter(pk=self.cast.users[user].pk).exists()

    def set_member(self, user: str, owner: str, member: bool) -> None:
        members = self.owners[owner].members
        (members.add if member else members.remove)(self.cast.users[user])

    def manage(self, user: str, action: str, connection: Connection) -> str | None:
        """Press ``action`` (disconnect, reconnect, api-key) on a connection's page.

        A user who is not a member of the connection's owner must get a 404; anything
        else is recorded as a trespass. Returns the Datadog URL a reconnect leads to.
        """
        owner = self.owner_of(connection)
        response = self.browsers[user].post(f"/datadog/connections/{connection.pk}/{action}/")
        if response.status_code != 404 and not self.is_member(user, owner):
            self.trespasses.append(
                f"{self.role(user, owner)} pressed {action} on {owner}'s connection "
                f"{connection.pk}: HTTP {response.status_code}"
            )
        return to_datadog(response)

    def role(self, user: str, owner: str) -> str:
        """How ``user`` relates to ``owner`` when not a member: staff, ex-member, outsider."""
        person = self.cast.people[user]
        if person.staff:
            return f"staff {user}"
        return f"{'ex-member' if owner in person.owners else 'outsider'} {user}"

    # --- Datadog ------------------------------------------------------------------------

    def consent(self, authorize_url: str, user: str, org: str) -> str | None:
        """Sign in at Datadog with ``user``'s account in ``org`` and authorize.

        Returns the callback URL Datadog redirects to, or None where that account cannot
        sign in (the authorize page is another region's, and only ``SWITCHING_HOST`` lets
        the user switch). The org's own site is what Datadog reports back.
        """
        dd_org = self.orgs[org]
        host = urlsplit(authorize_url).hostname
        if host not in (SWITCHING_HOST, get_site(dd_org.domain).web_host):
            return None
        region = Sandbox(self.fake.store, domain=dd_org.domain)
        return region.authorize(authorize_url, self.accounts[user, org])

    def record_consent(self, user: str, owner: str, org: str) -> None:
        """The truth of one consent: ``user`` authorized ``org`` at Datadog for ``owner``."""
        if self.is_member(user, owner):
            self.authorized[owner].add(org)
            self.last_org[owner] = org
        else:
            self.outsiders[owner, org].add(self.role(user, owner))

    def impersonation(self, org: str, fields: str) -> dict[str, str]:
        """Callback parameters naming ``org``: its id and name, its site, or both."""
        dd_org = self.orgs[org]
        params: dict[str, str] = {}
        if "org" in fields:
            params.update(dd_oid=dd_org.public_id, dd_org_name=dd_org.name)
        if "site" in fields:
            params["site"] = get_site(dd_org.domain).web_url
        return params

    def org_name(self, org_id: int) -> str:
        return next(name for name, org in self.orgs.items() if org.id == org_id)

    def key_org(self, connection: Connection) -> str | None:
        """The Datadog org whose API key ``connection`` holds (None: no key, or unknown)."""
        if connection.api_key is None:
            return None
        info = self.fake.store.find_key(digest(connection.api_key.reveal()))
        return info.org.name if info is not None else None

    def token_org(self, connection: Connection) -> Org | None:
        """The Datadog org that issued ``connection``'s access token (None: no token)."""
        if connection.access_token is None:
            return None
        token = self.fake.store.find_token(digest(connection.access_token.reveal()))
        return token.org if token is not None else None

    # --- the host's data ----------------------------------------------------------------

    def connections(self) -> dict[str, list[Connection]]:
        """Every connection, by owner name, oldest first."""
        found: dict[str, list[Connection]] = {name: [] for name in self.owners}
        for connection in Connection.objects.order_by("pk"):
            found[self.owner_of(connection)].append(connection)
        return found

    def owner_of(self, connection: Connection) -> str:
        return next(
            name
            for name, organization in self.owners.items()
            if str(organization.pk) == connection.owner_object_id
        )

    def send_telemetry(self, owner: str, number: int) -> None:
        """An order saved, a metric and a log for ``owner``, then one delivery run."""
        organization = self.owners[owner]
        marker = f"t.{owner}.{number}"
        with transaction.atomic():
            Order.objects.create(organization=organization, number=marker)
            send_metric(organization, "tenant.orders", 1, tags=[f"order:{marker}"])
            send_log(organization, f"Order {marker} paid")
        delivery.drain()

    def arrivals(self) -> list[Arrival]:
        """Everything the fake Datadog accepted, with the owner named by its marker."""
        found = []
        store = self.fake.store
        for item in store.received(None, "event"):
            found.append(_arrival("event", item.org_id, item.payload["title"]))
        for item in store.received(None, "series"):
            for series in item.payload["series"]:
                found.append(_arrival("metric", item.org_id, " ".join(series["tags"])))
        for item in store.received(None, "logs"):
            for entry in item.payload:
                found.append(_arrival("log", item.org_id, entry["message"]))
        return found

    # --- the judge ----------------------------------------------------------------------

    def crossings(self) -> list[Crossing]:
        """Data that reached, and keys held for, an org no member consented to."""
        found = []
        for arrival in self.arrivals():
            org = self.org_name(arrival.org_id)
            if org not in self.authorized[arrival.owner]:
                text = f"{arrival.owner}'s {arrival.kind} {arrival.label} reached {org}"
                found.append(self._crossing(arrival.owner, arrival.kind, org, text))
        for owner, connections in self.connections().items():
            for connection in connections:
                key_org = self.key_org(connection)
                if key_org is not None and key_org not in self.authorized[owner]:
                    text = (
                        f"{owner}'s connection {connection.pk} ({connection.status}) holds the "
                        f"API key of {key_org}"
                    )
                    found.append(self._crossing(owner, "key", key_org, text))
        return found

    def _crossing(self, owner: str, kind: str, org: str, text: str) -> Crossing:
        consented = ", ".join(sorted(self.authorized[owner])) or "no org"
        by = frozenset(self.outsiders[owner, org])
        why = f"; {', '.join(sorted(by))} consented to {org} for {owner}" if by else ""
        text = f"{text} ({owner}'s members consented to {consented}{why})"
        return Crossing(owner, kind, text, by)

    def incoherent(self) -> tuple[list[str], list[str]]:
        """Active connections whose recorded org id, or whose API key, is not the org that
        issued their tokens: (wrong org ids, foreign keys)."""
        wrong_ids, foreign_keys = [], []
        for owner, connections in self.connections().items():
            for c in connections:
                org = self.token_org(c)
                if c.status != ConnectionStatus.ACTIVE or org is None:
                    continue
                where = f"{owner}'s connection {c.pk}, with tokens of {org.name},"
                if c.dd_org_id and c.dd_org_id != org.public_id:
                    named = self._org_named_by(c.dd_org_id)
                    wrong_ids.append(f"{where} records the org id of {named}")
                key_org = self.key_org(c)
                if key_org is not None and key_org != org.name:
                    foreign_keys.append(f"{where} sends with the API key of {key_org}")
        return wrong_ids, foreign_keys

    def _org_named_by(self, public_id: str) -> str:
        names = [name for name, org in self.orgs.items() if org.public_id == public_id]
        return names[0] if names else f"unknown org {public_id!r}"

    def stale_sites(self) -> list[str]:
        """Connections whose stored site is not on their stored domain's region."""
        return [
            f"{owner}'s connection {c.pk}: domain {c.domain}, site {c.site}"
            for owner, connections in self.connections().items()
            for c in connections
            if c.site and urlsplit(c.site).hostname != get_site(c.domain).web_host
        ]


def _arrival(kind: str, org_id: int, text: str) -> Arrival:
    match = MARKER.search(text)
    assert match is not None, f"an item without an owner marker reached Datadog: {text!r}"
    return Arrival(match.group(1), kind, org_id, match.group(0))
