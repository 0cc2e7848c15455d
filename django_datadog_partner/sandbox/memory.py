"""``Store`` in memory, thread-safe: the fake Datadog of ``django_datadog_partner.testing``.

No tables and no server: host test suites use it without installing the sandbox app, and
requests sent from worker threads see the same state.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from .state import Code, Faults, KeyInfo, Org, Received, Store, Token, User


@dataclass
class _Key:
    key_id: str
    org_id: int
    key_hash: str
    last4: str
    name: str
    user_id: int | None
    revoked_at: datetime | None = None


@dataclass
class _Grant:
    org_id: int
    user_id: int
    scopes: list[str]
    revoked: bool = False


@dataclass
class _Token:
    grant_id: int
    kind: str
    expires_at: datetime | None
    retired: bool = False


@dataclass
class _Code:
    code: Code
    used: bool = False
    grant_id: int | None = None


@dataclass
class MemoryState:
    orgs: dict[int, Org] = field(default_factory=dict)
    users: dict[int, User] = field(default_factory=dict)
    faults: dict[int, Faults] = field(default_factory=dict)
    keys: dict[str, _Key] = field(default_factory=dict)  # by hash
    codes: dict[str, _Code] = field(default_factory=dict)
    grants: dict[int, _Grant] = field(default_factory=dict)
    tokens: dict[str, _Token] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)


class MemoryStore(Store):
    def __init__(self) -> None:
        self.state = MemoryState()
        self._lock = threading.RLock()
        self._ids = itertools.count(1)

    def create_org(self, name: str, domain: str = "") -> Org:
        with self._lock:
            org = Org(id=next(self._ids), public_id=str(uuid.uuid4()), name=name, domain=domain)
            self.state.orgs[org.id] = org
            self.state.faults[org.id] = Faults()
            return org

    def get_org(self, org_id: int) -> Org:
        return self.state.orgs[org_id]

    def create_user(self, org_id: int, name: str, email: str = "") -> User:
        with self._lock:
            user = User(id=next(self._ids), public_id=str(uuid.uuid4()), org_id=org_id, name=name)
            self.state.users[user.id] = user
            return user

    def get_user(self, user_id: int) -> User:
        return self.state.users[user_id]

    def find_user(self, public_id: str) -> User | None:
        return next((u for u in self.state.users.values() if u.public_id == public_id), None)

    def faults(self, org_id: int) -> Faults:
        return self.state.faults[org_id]

    def set_faults(self, org_id: int, faults: Faults) -> None:
        with self._lock:
            self.state.faults[org_id] = faults

    def spend_fault(self, org_id: int) -> None:
        with self._lock:
            faults = self.state.faults[org_id]
            if faults.times is None:
                return
            left = faults.times - 1
            self.state.faults[org_id] = dataclasses.replace(
                faults, times=left if left > 0 else None, intake=faults.intake if left > 0 else ""
            )

    def find_key(self, key_hash: str) -> KeyInfo | None:
        key = self.state.keys.get(key_hash)
        if key is None:
            return None
        org = self.state.orgs[key.org_id]
        return KeyInfo(key.key_id, org, key.last4, key.name, key.revoked_at is not None)

    def add_key_unless_active(
        self, org_id: int, user_id: int | None, key_id: str, key_hash: str, last4: str, name: str
    ) -> bool:
        with self._lock:
            if self._active_keys(org_id):
                return False
            self.state.keys[key_hash] = _Key(key_id, org_id, key_hash, last4, name, user_id)
            return True

    def revoke_keys(self, org_id: int) -> int:
        with self._lock:
            active = self._active_keys(org_id)
            for key in active:
                key.revoked_at = timezone.now()
            return len(active)

    def revoked_since(self, org_id: int, since: datetime) -> bool:
        return bool(self._revoked_since(org_id, since))

    def restore_key(self, org_id: int, since: datetime) -> int:
        with self._lock:
            revoked = self._revoked_since(org_id, since)
            if not revoked or self._active_keys(org_id):
                return 0
            max(revoked, key=lambda k: k.revoked_at or since).revoked_at = None
            return 1

    def _active_keys(self, org_id: int) -> list[_Key]:
        return [k for k in self.state.keys.values() if k.org_id == org_id and not k.revoked_at]

    def _revoked_since(self, org_id: int, since: datetime) -> list[_Key]:
        return [
            k
            for k in self.state.keys.values()
            if k.org_id == org_id and k.revoked_at is not None and k.revoked_at > since
        ]

    def add_code(self, code: Code) -> None:
        with self._lock:
            self.state.codes[code.code_hash] = _Code(code)

    def take_code(self, code_hash: str) -> tuple[Code | None, bool]:
        with self._lock:
            entry = self.state.codes.get(code_hash)
            if entry is None:
                return None, False
            replayed, entry.used = entry.used, True
            return entry.code, replayed

    def add_grant(self, code: Code) -> int:
        with self._lock:
            grant_id = next(self._ids)
            self.state.grants[grant_id] = _Grant(code.org_id, code.user_id, list(code.scopes))
            self.state.codes[code.code_hash].grant_id = grant_id
            return grant_id

    def revoke_grant_of_code(self, code_hash: str) -> None:
        entry = self.state.codes.get(code_hash)
        if entry is not None and entry.grant_id is not None:
            self.revoke_grant(entry.grant_id)

    def add_token(
        self, grant_id: int, kind: str, token_hash: str, expires_at: datetime | None
    ) -> None:
        with self._lock:
            self.state.tokens[token_hash] = _Token(grant_id, kind, expires_at)

    def find_token(self, token_hash: str) -> Token | None:
        with self._lock:
            token = self.state.tokens.get(token_hash)
            if token is None:
                return None
            grant = self.state.grants[token.grant_id]
            return Token(
                token_hash=token_hash,
                kind=token.kind,
                grant_id=token.grant_id,
                org=self.state.orgs[grant.org_id],
                user_id=grant.user_id,
                user_public_id=self.state.users[grant.user_id].public_id,
                scopes=list(grant.scopes),
                expires_at=token.expires_at,
                usable=not token.retired and not grant.revoked,
            )

    def rotate_token(self, token_hash: str) -> bool:
        with self._lock:
            token = self.state.tokens.get(token_hash)
            if token is None or token.retired:
                return False
            token.retired = True
            return True

    def revoke_token(self, token_hash: str, *, whole_grant: bool) -> None:
        with self._lock:
            token = self.state.tokens.get(token_hash)
            if token is None:
                return
            if whole_grant:
                self.revoke_grant(token.grant_id)
            token.retired = True

    def revoke_grant(self, grant_id: int) -> None:
        with self._lock:
            self.state.grants[grant_id].revoked = True

    def revoke_org_grants(self, org_id: int) -> int:
        with self._lock:
            active = [g for g in self.state.grants.values() if g.org_id == org_id and not g.revoked]
            for grant in active:
                grant.revoked = True
            return len(active)

    def record(self, item: Received) -> int:
        with self._lock:
            item_id = next(self._ids)
            item.extra = {**item.extra, "id": item_id}
            if item.received_at is None:
                item.received_at = timezone.now()
            self.state.received.append(item)
            return item_id

    def received(self, org_id: int | None, kind: str) -> list[Received]:
        with self._lock:
            return [
                item
                for item in self.state.received
                if item.kind == kind and (org_id is None or item.org_id == org_id)
            ]
