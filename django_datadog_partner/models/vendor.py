"""Vendor-wide state, not any one connection's: configuration alarms and the circuit
breaker of each Datadog site."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Alarm(models.Model):
    """A configuration problem only the vendor can fix; shown as an admin banner."""

    code = models.CharField(_("code"), max_length=64, unique=True)
    message = models.TextField(_("message"))
    count = models.PositiveIntegerField(_("occurrences"), default=1)
    first_raised_at = models.DateTimeField(_("first raised"), default=timezone.now)
    last_raised_at = models.DateTimeField(_("last raised"), default=timezone.now)
    cleared_at = models.DateTimeField(_("cleared"), null=True, blank=True)

    class Meta:
        verbose_name = _("configuration alarm")
        verbose_name_plural = _("configuration alarms")
        ordering = ("-last_raised_at",)

    def __str__(self) -> str:
        return f"{self.code}: {self.message[:80]}"


class SiteBreaker(models.Model):
    """The circuit breaker of one Datadog site, shared by every worker.

    Closed while ``open_until`` is empty. Open, nothing is sent to the site until
    ``open_until``; after that one delivery run takes the probe by moving ``open_until``
    forward, and the probe's answer closes the breaker or keeps it open.
    """

    domain = models.CharField(_("Datadog region"), max_length=100, unique=True)
    failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    open_until = models.DateTimeField(_("open until"), null=True, blank=True)
    opened_at = models.DateTimeField(_("opened at"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=500, blank=True, default="")
    #: Connections that failed since the site last answered (null: too many to list, all).
    failing_connections = models.JSONField(
        _("failing connections"), null=True, blank=True, default=list
    )

    class Meta:
        verbose_name = _("site breaker")
        verbose_name_plural = _("site breakers")
        ordering = ("domain",)

    def __str__(self) -> str:
        state = "closed" if self.open_until is None else f"open until {self.open_until:%H:%M:%S}"
        return f"{self.domain}: {state}"
