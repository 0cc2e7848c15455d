"""Host-app models the tests connect and track."""

import uuid

from django.conf import settings
from django.db import models


class Organization(models.Model):
    name = models.CharField(max_length=100)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="organizations")

    def __str__(self) -> str:
        return self.name


class Workspace(models.Model):
    """An owner with a UUID primary key."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name


class Order(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    number = models.CharField(max_length=20)
    status = models.CharField(max_length=20, default="new")
    total = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    secret_note = models.CharField(max_length=100, blank=True, default="")

    def __str__(self) -> str:
        return f"Order {self.number}"


class Untracked(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name
