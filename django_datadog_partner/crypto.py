"""Encryption of secrets at rest with ``cryptography``'s MultiFernet.

Keys come from ``ENCRYPTION_KEYS`` (newest first) and are independent of ``SECRET_KEY``.
Decryption fails closed: a wrong or missing key raises ``CredentialsUnreadableError``;
ciphertext or an empty string is never handed back as if it were a credential.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.views.decorators.debug import sensitive_variables

from .conf import app_settings
from .exceptions import ConfigurationError, CredentialsUnreadableError


@functools.lru_cache(maxsize=8)
@sensitive_variables()
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):
        # From None: cryptography's frames hold the malformed key.
        raise ConfigurationError(
            "DATADOG_PARTNER['ENCRYPTION_KEYS'] holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes)."
        ) from None


def current_keys() -> tuple[str, ...]:
    return tuple(app_settings.ENCRYPTION_KEYS)


@sensitive_variables()
def encrypt(plaintext: str) -> str:
    return _multifernet(current_keys()).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return _fail_closed(_multifernet(current_keys()).decrypt, ciphertext)


def rotate(ciphertext: str) -> str:
    """Re-encrypt under the newest key (the original timestamp is kept)."""
    return _fail_closed(_multifernet(current_keys()).rotate, ciphertext)


@sensitive_variables()  # cryptography's frames below hold the plaintext
def _fail_closed(operation: Callable[[bytes], bytes], ciphertext: str) -> str:
    """A wrong or missing key is a dedicated error; ciphertext is never handed back."""
    try:
        return operation(ciphertext.encode()).decode()
    except InvalidToken:
        raise CredentialsUnreadableError(
            "A stored secret cannot be decrypted with the configured ENCRYPTION_KEYS."
        ) from None


@sensitive_variables()
def is_on_newest_key(ciphertext: str) -> bool:
    """True when the newest key alone decrypts the value (nothing left on retired keys)."""
    try:
        Fernet(current_keys()[0]).decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True


@sensitive_variables()
def fingerprint(secret: str) -> str:
    """A stable, non-reversible identifier for a high-entropy secret (API keys)."""
    return hashlib.sha256(b"django-datadog-partner:" + secret.encode()).hexdigest()


@sensitive_variables()
def last4(secret: str) -> str:
    return secret[-4:] if len(secret) >= 12 else ""


def generate_key() -> str:
    return Fernet.generate_key().decode()


if __name__ == "__main__":
    print(generate_key())
