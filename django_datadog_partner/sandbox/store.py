"""``Store`` on the sandbox app's tables (the sandbox server and end-to-end tests)."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import models as m
from .state import Code, Faults, KeyInfo, Org, Received, Store, Token, User


def org_record(org: m.SandboxOrg) -> Org:
    return Org(id=org.pk, public_id=str(org.public_id), name=org.name, domain=org.domain)


def faults_record(org: m.SandboxOrg) -> Faults:
    return Faults(
        intake=org.intake_fault,
        times=org.intake_fault_times,
        rate_limit_reset=org.rate_limit_reset,
        slow_seconds=org.slow_seconds,
        refresh_invalid_grant=org.refresh_invalid_grant,
        key_creation=org.key_creation_fault,
        bare_callback=org.bare_callback,
        restorable_key_conflict=org.restorable_key_conflict,
        revoke_needs_bearer=org.revoke_needs_bearer,
        rotate_refresh_tokens=org.rotate_refresh_tokens,
        series_errors=org.series_errors,
        check_host_required=org.check_host_required,
    )


class OrmStore(Store):
    def create_org(self, name: str, domain: str = "") -> Org:
        return org_record(m.SandboxOrg.objects.create(name=name, domain=domain))

    def get_org(self, org_id: int) -> Org:
        return org_record(m.SandboxOrg.objects.get(pk=org_id))

    def create_user(self, org_id: int, name: str, email: str = "") -> User:
        return self._user(m.SandboxUser.objects.create(org_id=org_id, name=name, email=email))

    def get_user(self, user_id: int) -> User:
        return self._user(m.SandboxUser.objects.get(pk=user_id))

    def find_user(self, public_id: str) -> User | None:
        try:
            user = m.SandboxUser.objects.filter(public_id=public_id).first()
        except ValidationError:  # not a UUID
            return None
        return self._user(user) if user is not None else None

    @staticmethod
    def _user(user: m.SandboxUser) -> User:
        return User(id=user.pk, public_id=str(user.public_id), org_id=user.org_id, name=user.name)

    def faults(self, org_id: int) -> Faults:
        return faults_record(m.SandboxOrg.objects.get(pk=org_id))

    def set_faults(self, org_id: int, faults: Faults) -> None:
        m.SandboxOrg.objects.filter(pk=org_id).update(
            intake_fault=faults.intake,
            intake_fault_times=faults.times,
            rate_limit_reset=faults.rate_limit_reset,
            slow_seconds=faults.slow_seconds,
            refresh_invalid_grant=faults.refresh_invalid_grant,
            key_creation_fault=faults.key_creation,
            bare_callback=faults.bare_callback,
            restorable_key_conflict=faults.restorable_key_conflict,
            revoke_needs_bearer=faults.revoke_needs_bearer,
            rotate_refresh_tokens=faults.rotate_refresh_tokens,
            series_errors=faults.series_errors,
            check_host_required=faults.check_host_required,
        )

    def spend_fault(self, org_id: int) -> None:
        counted = m.SandboxOrg.objects.filter(pk=org_id, intake_fault_times__isnull=False)
        counted.filter(intake_fault_times__gt=0).update(
            intake_fault_times=F("intake_fault_times") - 1
        )
        counted.filter(intake_fault_times__lte=0).update(intake_fault="", intake_fault_times=None)

    def find_key(self, key_hash: str) -> KeyInfo | None:
        key = m.SandboxAPIKey.objects.select_related("org").filter(key_hash=key_hash).first()
        if key is None:
            return None
        return KeyInfo(
            key_id=key.key_id,
            org=org_record(key.org),
            last4=key.last4,
            name=key.name,
            revoked=key.revoked_at is not None,
        )

    def add_key_unless_active(
        self, org_id: int, user_id: int | None, key_id: str, key_hash: str, last4: str, name: str
    ) -> bool:
        with transaction.atomic():
            m.SandboxOrg.objects.select_for_update().get(pk=org_id)
            if m.SandboxAPIKey.objects.filter(org_id=org_id, revoked_at__isnull=True).exists():
                return False
            m.SandboxAPIKey.objects.create(
                org_id=org_id,
                created_by_id=user_id,
                key_id=key_id,
                key_hash=key_hash,
                last4=last4,
                name=name,
            )
        return True

    def revoke_keys(self, org_id: int) -> int:
        return m.SandboxAPIKey.objects.filter(org_id=org_id, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )

    def revoked_since(self, org_id: int, since: datetime) -> bool:
        return m.SandboxAPIKey.objects.filter(org_id=org_id, revoked_at__gt=since).exists()

    def restore_key(self, org_id: int, since: datetime) -> int:
        with transaction.atomic():
            m.SandboxOrg.objects.select_for_update().get(pk=org_id)
            if m.SandboxAPIKey.objects.filter(org_id=org_id, revoked_at__isnull=True).exists():
                return 0
            latest = (
                m.SandboxAPIKey.objects.filter(org_id=org_id, revoked_at__gt=since)
                .order_by("-revoked_at")
                .first()
            )
            if latest is None:
                return 0
            latest.revoked_at = None
            latest.save(update_fields=["revoked_at"])
        return 1

    def add_code(self, code: Code) -> None:
        m.SandboxAuthorizationCode.objects.create(
            code_hash=code.code_hash,
            org_id=code.org_id,
            user_id=code.user_id,
            redirect_uri=code.redirect_uri,
            code_challenge=code.code_challenge,
            scopes=code.scopes,
            expires_at=code.expires_at,
        )

    def take_code(self, code_hash: str) -> tuple[Code | None, bool]:
        row = m.SandboxAuthorizationCode.objects.filter(code_hash=code_hash).first()
        if row is None:
            return None, False
        taken = m.SandboxAuthorizationCode.objects.filter(pk=row.pk, used_at__isnull=True).update(
            used_at=timezone.now()
        )
        code = Code(
            code_hash=row.code_hash,
            org_id=row.org_id,
            user_id=row.user_id,
            redirect_uri=row.redirect_uri,
            code_challenge=row.code_challenge,
            scopes=list(row.scopes),
            expires_at=row.expires_at,
        )
        return code, not taken

    def add_grant(self, code: Code) -> int:
        grant = m.SandboxGrant.objects.create(
            org_id=code.org_id, user_id=code.user_id, scopes=code.scopes
        )
        m.SandboxAuthorizationCode.objects.filter(code_hash=code.code_hash).update(grant=grant)
        return grant.pk

    def revoke_grant_of_code(self, code_hash: str) -> None:
        row = m.SandboxAuthorizationCode.objects.filter(code_hash=code_hash).first()
        if row is not None and row.grant_id is not None:
            self.revoke_grant(row.grant_id)

    def add_token(
        self, grant_id: int, kind: str, token_hash: str, expires_at: datetime | None
    ) -> None:
        m.SandboxToken.objects.create(
            grant_id=grant_id, kind=kind, token_hash=token_hash, expires_at=expires_at
        )

    def find_token(self, token_hash: str) -> Token | None:
        row = (
            m.SandboxToken.objects.select_related("grant__org", "grant__user")
            .filter(token_hash=token_hash)
            .first()
        )
        if row is None:
            return None
        grant = row.grant
        return Token(
            token_hash=row.token_hash,
            kind=row.kind,
            grant_id=grant.pk,
            org=org_record(grant.org),
            user_id=grant.user_id,
            user_public_id=str(grant.user.public_id),
            scopes=list(grant.scopes),
            expires_at=row.expires_at,
            usable=row.rotated_at is None and row.revoked_at is None and grant.revoked_at is None,
        )

    def rotate_token(self, token_hash: str) -> bool:
        return bool(
            m.SandboxToken.objects.filter(
                token_hash=token_hash, rotated_at__isnull=True, revoked_at__isnull=True
            ).update(rotated_at=timezone.now())
        )

    def revoke_token(self, token_hash: str, *, whole_grant: bool) -> None:
        row = m.SandboxToken.objects.filter(token_hash=token_hash).first()
        if row is None:
            return
        if whole_grant:
            self.revoke_grant(row.grant_id)
        else:
            m.SandboxToken.objects.filter(pk=row.pk, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )

    def revoke_grant(self, grant_id: int) -> None:
        now = timezone.now()
        m.SandboxGrant.objects.filter(pk=grant_id, revoked_at__isnull=True).update(revoked_at=now)
        m.SandboxToken.objects.filter(grant_id=grant_id, revoked_at__isnull=True).update(
            revoked_at=now
        )

    def revoke_org_grants(self, org_id: int) -> int:
        grants = list(
            m.SandboxGrant.objects.filter(org_id=org_id, revoked_at__isnull=True).values_list(
                "pk", flat=True
            )
        )
        for grant_id in grants:
            self.revoke_grant(grant_id)
        return len(grants)

    def record(self, item: Received) -> int:
        row = m.SandboxReceived.objects.create(
            org_id=item.org_id,
            kind=item.kind,
            payload=item.payload,
            content_encoding=item.content_encoding[:20],
            details=item.extra,
            received_at=item.received_at or timezone.now(),
        )
        return row.pk

    def received(self, org_id: int | None, kind: str) -> list[Received]:
        rows = m.SandboxReceived.objects.filter(kind=kind).order_by("received_at", "pk")
        if org_id is not None:
            rows = rows.filter(org_id=org_id)
        return [
            Received(
                kind=row.kind,
                org_id=row.org_id,
                payload=row.payload,
                content_encoding=row.content_encoding,
                received_at=row.received_at,
                extra={**row.details, "id": row.pk},
            )
            for row in rows
        ]
