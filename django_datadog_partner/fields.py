"""A model field holding an encrypted secret that is only decrypted on explicit request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models.query_utils import DeferredAttribute
from django.views.decorators.debug import sensitive_variables

from . import crypto


class Secret:
    """An encrypted value. ``reveal()`` decrypts; ``str``/``repr`` never show the plaintext."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    @classmethod
    @sensitive_variables()
    def seal(cls, plaintext: str) -> Secret:
        return cls(crypto.encrypt(plaintext))

    def reveal(self) -> str:
        return crypto.decrypt(self.ciphertext)

    def __repr__(self) -> str:
        return "<Secret: redacted>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)


if TYPE_CHECKING:
    # For type checkers: assign str/Secret/None, read Secret/None.
    _SecretFieldBase = models.Field[str | Secret | None, Secret | None]
else:
    _SecretFieldBase = models.Field


class EncryptedSecretField(_SecretFieldBase):
    """Stores a Fernet token. Assign a ``str`` to encrypt it, ``None`` to wipe it.

    Reading gives a ``Secret`` (or ``None``); list views and ``repr`` never decrypt.
    """

    description = "An encrypted secret"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("null", True)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def get_internal_type(self) -> str:
        return "TextField"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret | None:
        return Secret(value) if value else None

    @sensitive_variables()
    def to_python(self, value: Any) -> Secret | None:
        if value is None or isinstance(value, Secret):
            return value
        if value == "":
            return None
        return Secret.seal(str(value))

    @sensitive_variables()
    def get_prep_value(self, value: Any) -> str | None:
        secret = self.to_python(value)
        return secret.ciphertext if secret is not None else None

    def value_to_string(self, obj: models.Model) -> str:
        # Serializers (dumpdata, fixtures) get the ciphertext, never the plaintext.
        value = self.value_from_object(obj)
        return value.ciphertext if isinstance(value, Secret) else ""


class _SecretDescriptor(DeferredAttribute):
    """Encrypts plaintext on assignment so an instance never holds it, even unsaved."""

    field: EncryptedSecretField

    @sensitive_variables()
    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = self.field.to_python(value)


EncryptedSecretField.descriptor_class = _SecretDescriptor
