"""What the fake Datadog remembers, behind one interface with two backends.

``OrmStore`` (the sandbox app's tables) serves the sandbox web pages and end-to-end tests
where another process talks to it over HTTP; ``MemoryStore`` backs
``django_datadog_partner.testing`` so host test suites need no tables and no server. The
protocol logic lives once, in ``engine.py``; stores only keep records. Secrets arrive here
already hashed.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Faults:
    """Injected misbehaviour of one org. See ``models.SandboxOrg`` for the meaning."""

    intake: str = ""
    times: int | None = None
    rate_limit_reset: int = 2
    slow_seconds: float = 0.0
    refresh_invalid_grant: bool = False
    key_creation: str = ""
    bare_callback: bool = False
    restorable_key_conflict: bool = False
    revoke_needs_bearer: bool = False
    rotate_refresh_tokens: bool = True
    series_errors: bool = False
    check_host_required: bool = False


@dataclass(frozen=True)
class Org:
    id: int
    public_id: str
    name: str
    domain: str = ""
    """Empty: any site this fake serves; else only that ``domain`` (keys are site-bound)."""


@dataclass(frozen=True)
class User:
    id: int
    public_id: str
    org_id: int
    name: str


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    org: Org
    last4: str
    name: str
    revoked: bool


@dataclass(frozen=True)
class Code:
    code_hash: str
    org_id: int
    user_id: int
    redirect_uri: str
    code_challenge: str
    scopes: list[str]
    expires_at: datetime


@dataclass(frozen=True)
class Token:
    token_hash: str
    kind: str  # "access" | "refresh"
    grant_id: int
    org: Org
    user_id: int
    user_public_id: str
    scopes: list[str]
    expires_at: datetime | None
    usable: bool
    """False once rotated or revoked, or when its grant was revoked."""


@dataclass
class Received:
    kind: str  # "event" | "series" | "logs" | "checks"
    org_id: int
    payload: Any
    content_encoding: str = ""
    received_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Store(abc.ABC):
    """Records kept by the fake Datadog. Every "take"/"rotate" is atomic."""

    # orgs and users
    @abc.abstractmethod
    def create_org(self, name: str, domain: str = "") -> Org: ...

    @abc.abstractmethod
    def get_org(self, org_id: int) -> Org: ...

    @abc.abstractmethod
    def create_user(self, org_id: int, name: str, email: str = "") -> User: ...

    @abc.abstractmethod
    def get_user(self, user_id: int) -> User: ...

    @abc.abstractmethod
    def find_user(self, public_id: str) -> User | None:
        """The user Datadog's API calls ``user_id`` (its UUID), or None."""

    @abc.abstractmethod
    def faults(self, org_id: int) -> Faults: ...

    @abc.abstractmethod
    def set_faults(self, org_id: int, faults: Faults) -> None: ...

    @abc.abstractmethod
    def spend_fault(self, org_id: int) -> None:
        """One counted fault was answered: decrement, and clear it at zero."""

    # API keys
    @abc.abstractmethod
    def find_key(self, key_hash: str) -> KeyInfo | None: ...

    @abc.abstractmethod
    def add_key_unless_active(
        self, org_id: int, user_id: int | None, key_id: str, key_hash: str, last4: str, name: str
    ) -> bool:
        """Store a new key; False (nothing stored) if the org already has an active one."""

    @abc.abstractmethod
    def revoke_keys(self, org_id: int) -> int: ...

    @abc.abstractmethod
    def revoked_since(self, org_id: int, since: datetime) -> bool:
        """Whether a key of the org was revoked after ``since`` (and is still revoked)."""

    @abc.abstractmethod
    def restore_key(self, org_id: int, since: datetime) -> int:
        """Un-revoke the org's latest key revoked after ``since``, unless one is active."""

    # OAuth
    @abc.abstractmethod
    def add_code(self, code: Code) -> None: ...

    @abc.abstractmethod
    def take_code(self, code_hash: str) -> tuple[Code | None, bool]:
        """(code, replayed): marks it used; a second take answers (code, True)."""

    @abc.abstractmethod
    def add_grant(self, code: Code) -> int:
        """Create the grant a code was exchanged for (remembered on the code)."""

    @abc.abstractmethod
    def revoke_grant_of_code(self, code_hash: str) -> None: ...

    @abc.abstractmethod
    def add_token(
        self, grant_id: int, kind: str, token_hash: str, expires_at: datetime | None
    ) -> None: ...

    @abc.abstractmethod
    def find_token(self, token_hash: str) -> Token | None: ...

    @abc.abstractmethod
    def rotate_token(self, token_hash: str) -> bool:
        """Retire a usable refresh token; False if it was already retired (a replay)."""

    @abc.abstractmethod
    def revoke_token(self, token_hash: str, *, whole_grant: bool) -> None: ...

    @abc.abstractmethod
    def revoke_grant(self, grant_id: int) -> None: ...

    @abc.abstractmethod
    def revoke_org_grants(self, org_id: int) -> int:
        """What an uninstall does: every grant of the org stops working."""

    # intake
    @abc.abstractmethod
    def record(self, item: Received) -> int:
        """Keep an accepted payload; answers its id (Datadog's event id for events)."""

    @abc.abstractmethod
    def received(self, org_id: int | None, kind: str) -> list[Received]:
        """Oldest first; ``org_id`` None: every org."""
