"""The sandbox's own "Datadog" state: orgs, users, OAuth grants, API keys, what arrived.

Secrets the sandbox issues (codes, tokens, API keys) are stored as SHA-256 hashes, as a
real server would; only the party that received them knows the plaintext.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class IntakeFault(models.TextChoices):
    NONE = "", _("none")
    RATE_LIMITED = "429", _("429 Too Many Requests (with X-RateLimit-* headers)")
    SERVER_ERROR = "500", _("500 Internal Server Error")
    UNAVAILABLE = "503", _("503 Service Unavailable")
    KEY_REJECTED = "403", _("403 Forbidden (as for a revoked key)")


class KeyCreationFault(models.TextChoices):
    NONE = "", _("none")
    CONFLICT = "409", _("409 Conflict (the org already has its key)")
    FORBIDDEN = "403", _("403 Forbidden (the user may not create API keys)")


class SandboxOrg(models.Model):
    """A Datadog organisation, with the faults injected into its traffic."""

    public_id = models.UUIDField(_("org id (dd_oid)"), default=uuid.uuid4, unique=True)
    name = models.CharField(_("name"), max_length=100)
    domain = models.CharField(
        _("Datadog region"),
        max_length=100,
        blank=True,
        default="",
        help_text=_("Its keys work only at this site; empty: at any sandbox site."),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    bare_callback = models.BooleanField(
        _("bare callback (only code, state and domain)"),
        default=False,
        help_text=_(
            "Off: the callback also carries site, dd_oid and dd_org_name, as Datadog sends "
            "them (undocumented; seen in public partner code). On: only what Datadog documents."
        ),
    )
    intake_fault = models.CharField(
        _("intake fault"), max_length=3, choices=IntakeFault.choices, blank=True, default=""
    )
    intake_fault_times = models.PositiveIntegerField(
        _("fault repeats"),
        null=True,
        blank=True,
        help_text=_("Answer the fault this many more times, then recover; empty: always."),
    )
    rate_limit_reset = models.PositiveIntegerField(_("X-RateLimit-Reset (seconds)"), default=2)
    slow_seconds = models.FloatField(_("delay every API answer by (seconds)"), default=0.0)
    refresh_invalid_grant = models.BooleanField(_("refresh answers invalid_grant"), default=False)
    rotate_refresh_tokens = models.BooleanField(
        _("a refresh replaces the refresh token"),
        default=True,
        help_text=_(
            "On: each refresh answers a new refresh token and the old one stops working. "
            "Off: the same refresh token is answered and stays valid. Datadog does not "
            "document which it does."
        ),
    )
    key_creation_fault = models.CharField(
        _("API key creation fault"),
        max_length=3,
        choices=KeyCreationFault.choices,
        blank=True,
        default="",
    )
    restorable_key_conflict = models.BooleanField(
        _("a restorable revoked key blocks a new one"),
        default=False,
        help_text=_(
            "On: while a revoked key can still be restored (7 days), the marketplace "
            "endpoint answers 409 as if it were active. Datadog does not document which."
        ),
    )
    revoke_needs_bearer = models.BooleanField(
        _("revoke checks the Bearer token"),
        default=False,
        help_text=_(
            "On: /oauth2/v1/revoke answers 401 unless Authorization: Bearer carries a usable "
            "access token of the org (Datadog's example sends one; it does not say it is "
            "checked)."
        ),
    )
    series_errors = models.BooleanField(
        _("series answers list errors"),
        default=False,
        help_text=_(
            "On: every accepted /api/v2/series request answers 202 with an errors list, as "
            "Datadog may (when it does is undocumented). Off: only out-of-range points are "
            "listed."
        ),
    )
    check_host_required = models.BooleanField(
        _("service checks need a host name"),
        default=False,
        help_text=_(
            "On: /api/v1/check_run refuses an empty host_name with 400 (whether Datadog "
            "accepts one is undocumented). Off: accepted."
        ),
    )

    class Meta:
        verbose_name = _("sandbox org")
        ordering = ("name", "pk")

    def __str__(self) -> str:
        return self.name


class SandboxUser(models.Model):
    """A "Datadog user"; belongs to exactly one org."""

    public_id = models.UUIDField(_("user id"), default=uuid.uuid4, unique=True)
    org = models.ForeignKey(SandboxOrg, on_delete=models.CASCADE, related_name="users")
    name = models.CharField(_("name"), max_length=100)
    email = models.EmailField(_("email"), blank=True, default="")

    class Meta:
        verbose_name = _("sandbox user")
        ordering = ("name", "pk")

    def __str__(self) -> str:
        return f"{self.name} ({self.org})"


class SandboxGrant(models.Model):
    """One user's consent to the OAuth client; revoking it is what an uninstall does."""

    org = models.ForeignKey(SandboxOrg, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(SandboxUser, on_delete=models.CASCADE, related_name="grants")
    scopes = models.JSONField(_("scopes"), default=list)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("sandbox grant")
        ordering = ("-created_at", "-pk")

    def __str__(self) -> str:
        return f"Grant {self.pk} for {self.user}"


class SandboxAuthorizationCode(models.Model):
    """Single use, short-lived, bound to the redirect URI and a PKCE S256 challenge."""

    code_hash = models.CharField(max_length=64, unique=True)
    org = models.ForeignKey(SandboxOrg, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(SandboxUser, on_delete=models.CASCADE, related_name="+")
    redirect_uri = models.CharField(max_length=500)
    code_challenge = models.CharField(max_length=128)
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    grant = models.ForeignKey(
        SandboxGrant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("sandbox authorization code")

    def __str__(self) -> str:
        return f"Code {self.pk} for {self.user_id}"


class SandboxToken(models.Model):
    """An access or refresh token of a grant. Refresh tokens rotate on every use."""

    class Kind(models.TextChoices):
        ACCESS = "access", _("access token")
        REFRESH = "refresh", _("refresh token")

    grant = models.ForeignKey(SandboxGrant, on_delete=models.CASCADE, related_name="tokens")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("sandbox token")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.pk} of grant {self.grant_id}"


class SandboxAPIKey(models.Model):
    """The org's marketplace API key (one active per org); only its hash is kept."""

    key_id = models.CharField(_("key id"), max_length=64, unique=True)
    org = models.ForeignKey(SandboxOrg, on_delete=models.CASCADE, related_name="api_keys")
    key_hash = models.CharField(max_length=64, unique=True)
    last4 = models.CharField(_("last 4"), max_length=4)
    name = models.CharField(_("name"), max_length=200)
    created_by = models.ForeignKey(
        SandboxUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("sandbox API key")
        ordering = ("-created_at", "-pk")

    def __str__(self) -> str:
        return f"{self.name} …{self.last4}"


class SandboxReceived(models.Model):
    """One accepted intake request: an event, a series payload, a batch of logs or of
    service checks."""

    class Kind(models.TextChoices):
        EVENT = "event", _("event")
        SERIES = "series", _("metrics")
        LOGS = "logs", _("logs")
        CHECKS = "checks", _("service checks")

    org = models.ForeignKey(SandboxOrg, on_delete=models.CASCADE, related_name="received")
    kind = models.CharField(max_length=10, choices=Kind.choices, db_index=True)
    payload = models.JSONField()
    content_encoding = models.CharField(max_length=20, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("received payload")
        ordering = ("-received_at", "-pk")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.pk} for org {self.org_id}"
