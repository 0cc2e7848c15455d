"""The outbox: one row per telemetry item and destination, written on the host's save path."""

from __future__ import annotations

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .connections import Connection


class OutboxKind(models.TextChoices):
    EVENT = "event", _("Event")
    METRIC = "metric", _("Metric point")
    LOG = "log", _("Log entry")
    CHECK = "check", _("Service check")


class OutboxStatus(models.TextChoices):
    """Only ``pending`` rows are ever sent; every other status is final until requeued."""

    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    NO_CONNECTION = "no_connection", _("No connection")
    PARKED = "parked", _("Parked (connection needs repair)")
    DEAD = "dead", _("Dead (permanent error)")
    EXPIRED = "expired", _("Expired (too old for Datadog)")
    CANCELLED = "cancelled", _("Cancelled (connection revoked)")


class OutboxEvent(models.Model):
    """One telemetry item (event, metric point, log entry or service check) for one destination.

    Written in the caller's transaction with only an owner reference (or a fixed
    connection). On its first claim it is *routed*: it becomes the row for the owner's
    first connection and a copy is added for each further one, so after routing a row is
    the outcome record of one item at one connection. ``payload`` is the Datadog body
    (after ``pre_event_send``), stored so every retry sends identical bytes.
    """

    kind = models.CharField(_("kind"), max_length=8, choices=OutboxKind.choices)
    # Few indexes on purpose: every one is written on the host's save path.
    owner_content_type = models.ForeignKey(
        ContentType,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("owner type"),
        db_index=False,
    )
    owner_object_id = models.CharField(_("owner id"), max_length=255, blank=True, default="")
    owner = GenericForeignKey("owner_content_type", "owner_object_id")
    connection = models.ForeignKey(
        Connection,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="outbox_events",
        verbose_name=_("connection"),
        db_index=False,  # the (connection, status) index serves
    )
    payload = models.JSONField(_("payload"))
    source = models.CharField(
        _("source"), max_length=100, blank=True, default="", help_text=_("Model label or 'api'.")
    )
    action = models.CharField(_("action"), max_length=16, blank=True, default="")

    status = models.CharField(
        _("status"), max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING
    )
    prepared = models.BooleanField(
        _("prepared"), default=False, help_text=_("Routed and passed through pre_event_send.")
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    event_time = models.DateTimeField(_("event time"), default=timezone.now)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=timezone.now)
    lease_until = models.DateTimeField(_("leased until"), null=True, blank=True)
    lease_token = models.CharField(_("lease token"), max_length=32, blank=True, default="")
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    last_error_code = models.CharField(_("reason"), max_length=100, blank=True, default="")
    last_error = models.TextField(_("last error"), blank=True, default="")

    class Meta:
        verbose_name = _("outbox item")
        verbose_name_plural = _("outbox items")
        ordering = ("-id",)
        indexes = [
            models.Index(fields=("status", "next_attempt_at"), name="datadog_partner_outbox_due"),
            # Partial: a row written on the save path is not finished and skips it. It
            # covers the dashboard's outcomes per hour (a range of finish times).
            models.Index(
                fields=("finished_at", "status", "kind"),
                name="datadog_partner_outbox_done",
                condition=models.Q(finished_at__isnull=False),
            ),
            # Partial: rows written on the save path have no connection yet and skip it.
            models.Index(
                fields=("connection", "status"),
                name="datadog_partner_outbox_conn",
                condition=models.Q(connection__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.get_status_display()})"
