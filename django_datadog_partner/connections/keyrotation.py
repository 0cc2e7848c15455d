"""Re-encrypt every stored secret under the newest ``ENCRYPTION_KEYS`` entry.

Drill: put a new key first in ``ENCRYPTION_KEYS`` (new writes use it at once), run
``datadog_partner_rotate_keys``, and remove the old key once the command reports nothing
left on retired keys. The walk goes by primary key in batches and skips values already on
the newest key, so it is idempotent and an interrupted run simply resumes. Each value is
written back with a compare-and-swap on its old ciphertext, so a token refreshed while the
walk runs (already written under the newest key) is never overwritten with an older one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.db import models

from .. import crypto
from ..exceptions import CredentialsUnreadableError
from ..fields import Secret
from ..models import AuthorizationRequest, Connection

#: Every encrypted column the app stores, by model.
ENCRYPTED_FIELDS: tuple[tuple[type[models.Model], tuple[str, ...]], ...] = (
    (Connection, ("access_token", "refresh_token", "api_key")),
    (AuthorizationRequest, ("code_verifier",)),
)
DEFAULT_BATCH_SIZE = 200


@dataclass
class RotationReport:
    """Counts of secret values; ``unreadable`` lists ``"<model> <pk> <field>"`` entries."""

    rotated: int = 0
    already_current: int = 0
    changed_meanwhile: int = 0
    unreadable: list[str] = field(default_factory=list)


def rotate_keys(
    *, batch_size: int = DEFAULT_BATCH_SIZE, progress: Callable[[str], None] | None = None
) -> RotationReport:
    """Re-encrypt every secret under the newest key; report what could not be."""
    report = RotationReport()
    for model, fields in ENCRYPTED_FIELDS:
        for pk, name, secret in _secrets(model, fields, batch_size):
            if crypto.is_on_newest_key(secret.ciphertext):
                report.already_current += 1
                continue
            try:
                rotated = crypto.rotate(secret.ciphertext)
            except CredentialsUnreadableError:
                report.unreadable.append(f"{model._meta.label} {pk} {name}")
                continue
            swapped = model._default_manager.filter(pk=pk, **{name: secret}).update(
                **{name: Secret(rotated)}
            )
            if swapped:
                report.rotated += 1
            else:
                report.changed_meanwhile += 1
        if progress:
            progress(f"{model._meta.verbose_name_plural}: done")
    return report


def secrets_on_retired_keys(*, batch_size: int = DEFAULT_BATCH_SIZE) -> list[str]:
    """``"<model> <pk> <field>"`` for every value the newest key alone cannot decrypt."""
    return [
        f"{model._meta.label} {pk} {name}"
        for model, fields in ENCRYPTED_FIELDS
        for pk, name, secret in _secrets(model, fields, batch_size)
        if not crypto.is_on_newest_key(secret.ciphertext)
    ]


def _secrets(
    model: type[models.Model], fields: tuple[str, ...], batch_size: int
) -> Iterator[tuple[object, str, Secret]]:
    """``(pk, field, Secret)`` for every stored value, read in primary-key batches."""
    last_pk = None
    queryset = model._default_manager.order_by("pk")
    while True:
        page = queryset.filter(pk__gt=last_pk) if last_pk is not None else queryset
        rows = list(page.values_list("pk", *fields)[:batch_size])
        if not rows:
            return
        for pk, *values in rows:
            for name, value in zip(fields, values, strict=True):
                if isinstance(value, Secret):
                    yield pk, name, value
        last_pk = rows[-1][0]
