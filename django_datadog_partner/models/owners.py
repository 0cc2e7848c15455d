"""The reference to an owner (any host model) that connections, authorisations and outbox
rows hold: a content type and a primary key as text."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS, models
from django.utils.translation import gettext_lazy as _

#: How connections, authorisations and outbox rows refer to an owner: (content type id,
#: primary key as text), so integer and UUID keys alike fit one column.
OwnerReference = tuple[int, str]


def owner_reference(
    owner: models.Model | tuple[type[models.Model], Any], using: str = DEFAULT_DB_ALIAS
) -> OwnerReference:
    """The reference to ``owner``: an instance, or ``(model, pk)`` when only the key is
    at hand (the save path never fetches the owner)."""
    # An instance, not type(instance): request.user is a lazy proxy whose type is not a model.
    model, pk = owner if isinstance(owner, tuple) else (owner, owner.pk)
    types = (
        ContentType.objects if using == DEFAULT_DB_ALIAS else ContentType.objects.db_manager(using)
    )
    return types.get_for_model(model).pk, str(pk)


class OwnedModel(models.Model):
    """A generic reference to any host model (integer or UUID primary keys alike)."""

    owner_content_type = models.ForeignKey(
        ContentType, on_delete=models.PROTECT, related_name="+", verbose_name=_("owner type")
    )
    owner_object_id = models.CharField(_("owner id"), max_length=255)
    owner = GenericForeignKey("owner_content_type", "owner_object_id")

    class Meta:
        abstract = True

    def set_owner(self, owner: models.Model) -> None:
        self.owner_content_type_id, self.owner_object_id = owner_reference(owner)

    @property
    def owner_reference(self) -> OwnerReference:
        return self.owner_content_type_id, self.owner_object_id
