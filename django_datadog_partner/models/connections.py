"""Connections to customers' Datadog organisations, with the status rules, and the
authorisations of the connect flow in progress."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..fields import EncryptedSecretField
from ..regions import region_name
from .owners import OwnedModel, owner_reference


class ConnectionStatus(models.TextChoices):
    """Every state a connection can be in; defined once and used everywhere."""

    ACTIVE = "active", _("Active")
    KEY_MISSING = "key_missing", _("API key missing")
    NEEDS_RECONNECT = "needs_reconnect", _("Needs reconnect")
    API_KEY_REJECTED = "api_key_rejected", _("API key rejected")
    REVOKING = "revoking", _("Revoking")
    REVOKED = "revoked", _("Revoked")
    CREDENTIALS_UNREADABLE = "credentials_unreadable", _("Credentials unreadable")

    # The rules below are the only place that says what each status allows.

    @classmethod
    def holding_tokens(cls) -> frozenset[str]:
        """Statuses whose OAuth tokens may be used and refreshed."""
        return frozenset({cls.ACTIVE, cls.KEY_MISSING, cls.API_KEY_REJECTED})

    @classmethod
    def ended(cls) -> frozenset[str]:
        """Revoked or being revoked: nothing is sent, checked or routed there again."""
        return frozenset({cls.REVOKING, cls.REVOKED})

    @classmethod
    def unusable(cls) -> frozenset[str]:
        """Statuses with no working grant: a fresh authorisation leaves them at once."""
        return frozenset({cls.NEEDS_RECONNECT, cls.CREDENTIALS_UNREADABLE}) | cls.ended()

    @classmethod
    def unchecked(cls) -> frozenset[str]:
        """Statuses the health check skips: nothing there can get better by itself."""
        return frozenset({cls.NEEDS_RECONNECT}) | cls.ended()


#: ``ConnectionStatus.ended()`` in a fixed order: the partial index of the health sweep and
#: its query must spell the condition alike (SQLite matches a partial index by its terms).
ENDED_STATUSES = sorted(ConnectionStatus.ended())


class ConnectionQuerySet(models.QuerySet["Connection"]):
    def owned_by(self, owner: models.Model) -> ConnectionQuerySet:
        content_type_id, object_id = owner_reference(owner)
        return self.filter(owner_content_type_id=content_type_id, owner_object_id=object_id)

    def active(self) -> ConnectionQuerySet:
        return self.filter(status=ConnectionStatus.ACTIVE)

    def holding_tokens(self) -> ConnectionQuerySet:
        return self.filter(status__in=ConnectionStatus.holding_tokens())

    def not_ended(self) -> ConnectionQuerySet:
        return self.exclude(status__in=ConnectionStatus.ended())


class Connection(OwnedModel):
    """One owner's link to one Datadog organisation on one site.

    ``dd_org_id``/``dd_org_name`` name the organisation of the connection's API key, as
    Datadog confirmed it over an authenticated call (``connections.identity``), never as a
    browser said; empty while Datadog has not named it. An owner has at most one
    connection per confirmed organisation and region. Secrets are encrypted; only
    ``api_key_last4`` is shown.
    """

    connected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("connected by"),
    )
    domain = models.CharField(_("Datadog region"), max_length=100)
    site = models.CharField(_("Datadog site"), max_length=255)
    dd_org_id = models.CharField(
        _("Datadog org id"),
        max_length=100,
        blank=True,
        default="",
        help_text=_("As Datadog confirmed it for the API key; empty: not confirmed."),
    )
    dd_org_name = models.CharField(
        _("Datadog org name"),
        max_length=255,
        blank=True,
        default="",
        help_text=_("As Datadog confirmed it for the API key."),
    )
    scopes = models.JSONField(_("granted scopes"), default=list, blank=True)

    access_token = EncryptedSecretField(_("access token"))
    refresh_token = EncryptedSecretField(_("refresh token"))
    expires_at = models.DateTimeField(_("access token expires at"), null=True, blank=True)
    refresh_answer_lost_at = models.DateTimeField(
        _("refresh answer lost at"),
        null=True,
        blank=True,
        help_text=_(
            "A refresh was sent but its answer never arrived, so Datadog may have replaced "
            "the refresh token. Cleared when new tokens are stored."
        ),
    )
    api_key = EncryptedSecretField(_("API key"))
    api_key_id = models.CharField(_("API key id"), max_length=100, blank=True, default="")
    api_key_last4 = models.CharField(_("API key last 4"), max_length=4, blank=True, default="")
    api_key_fingerprint = models.CharField(
        _("API key fingerprint"), max_length=64, blank=True, default="", db_index=True
    )

    status = models.CharField(
        _("status"),
        max_length=32,
        choices=ConnectionStatus.choices,
        default=ConnectionStatus.ACTIVE,
        db_index=True,
    )
    status_reason = models.TextField(_("status reason"), blank=True, default="")
    status_changed_at = models.DateTimeField(_("status changed at"), default=timezone.now)
    paused_until = models.DateTimeField(
        _("sending paused until"),
        null=True,
        blank=True,
        help_text=_("Set by a 429 from Datadog; every worker honours it."),
    )

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    last_success_at = models.DateTimeField(_("last success"), null=True, blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)
    last_error_code = models.CharField(_("last error"), max_length=100, blank=True, default="")
    health_checked_at = models.DateTimeField(_("last health check"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        _("last heartbeat"),
        null=True,
        blank=True,
        help_text=_("When the sweeper last queued this connection's heartbeat metric."),
    )

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        verbose_name = _("Datadog connection")
        verbose_name_plural = _("Datadog connections")
        ordering = ("-created_at",)
        permissions = [
            (
                "manage_connection",
                _("Can manage any Datadog connection (revoke, refresh, test, recreate key)"),
            )
        ]
        constraints = [
            models.UniqueConstraint(
                fields=("owner_content_type", "owner_object_id", "domain", "dd_org_id"),
                condition=~models.Q(dd_org_id=""),
                name="datadog_partner_connection_verified_org",
            )
        ]
        indexes = [
            models.Index(
                fields=("owner_content_type", "owner_object_id", "status"),
                name="datadog_partner_conn_owner",
            ),
            # The health sweep's due selection, oldest check first (connections.health):
            # partial, so revoked connections, never checked again, are not walked past.
            models.Index(
                fields=("health_checked_at", "id"),
                name="datadog_partner_conn_checked",
                condition=~models.Q(status__in=ENDED_STATUSES),
            ),
        ]

    def __str__(self) -> str:
        return self.label

    def __repr__(self) -> str:
        key = f"…{self.api_key_last4}" if self.api_key_last4 else "none"
        return f"<Connection {self.pk} domain={self.domain!r} status={self.status!r} api_key={key}>"

    @property
    def label(self) -> str:
        """How a connection is named to people, everywhere (admin, pages, commands):
        "Acme Shop → Datadog org \u2018Acme\u2019 (US1)", the organisation once Datadog
        named it."""
        return f"{self.owner_name} → {self.datadog_label}"

    @property
    def datadog_label(self) -> str:
        """The Datadog side of :attr:`label`: "Datadog org \u2018Acme\u2019 (US1)"."""
        org = self.dd_org_name or self.dd_org_id
        datadog = _("Datadog org \u2018%(org)s\u2019") % {"org": org} if org else _("Datadog")
        return f"{datadog} ({self.region_name})"

    @property
    def owner_name(self) -> str:
        """The owner as the host names it (``str(owner)``), or a placeholder once deleted."""
        try:
            owner = self.owner
        except (AttributeError, ValidationError):  # its model is gone, or its key malformed
            owner = None
        if owner is None:
            return str(_("deleted owner"))
        return str(owner)

    @property
    def region_name(self) -> str:
        return region_name(self.domain)

    @property
    def holds_tokens(self) -> bool:
        return self.status in ConnectionStatus.holding_tokens()

    @property
    def has_ended(self) -> bool:
        return self.status in ConnectionStatus.ended()

    @property
    def deliverable(self) -> bool:
        return self.status == ConnectionStatus.ACTIVE


class StatusDashboard(Connection):
    """The admin's status dashboard. A proxy with no rows of its own: the admin index lists
    models only, so this gives the dashboard its entry there (as django-q2 does for its
    failed and successful tasks)."""

    class Meta:
        proxy = True
        verbose_name = _("status dashboard")
        verbose_name_plural = _("status dashboard")
        default_permissions = ()


class AuthorizationRequest(OwnedModel):
    """One pending OAuth authorisation: single use, bound to a user and a browser."""

    LIFETIME_SECONDS = 600
    MAX_PER_SESSION = 10

    state = models.CharField(_("state"), max_length=128, unique=True)
    code_verifier = EncryptedSecretField(_("PKCE verifier"))
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("user")
    )
    binding_hash = models.CharField(
        _("browser binding"),
        max_length=64,
        db_index=True,
        help_text=_("SHA-256 of a random value kept in the user's session."),
    )
    domain = models.CharField(_("Datadog region"), max_length=100)
    site = models.CharField(_("Datadog site"), max_length=255)
    reconnect_of = models.ForeignKey(
        Connection,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("reconnects"),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"), db_index=True)
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("authorization request")
        verbose_name_plural = _("authorization requests")
        ordering = ("-created_at",)

    def __str__(self) -> str:
        # Named as people read it in the admin: the region's name and the user's.
        return f"Authorization for Datadog {region_name(self.domain)} by {self.user}"

    def __repr__(self) -> str:
        return f"<AuthorizationRequest {self.pk} domain={self.domain!r} used={bool(self.used_at)}>"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.expires_at is None:
            self.expires_at = self.created_at + timedelta(seconds=self.LIFETIME_SECONDS)
        super().save(*args, **kwargs)
