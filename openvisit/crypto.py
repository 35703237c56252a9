"""Field encryption for contact details and stored secrets, and keyed hashes.

Fernet (AES-128-CBC + HMAC-SHA256, authenticated) through MultiFernet so keys rotate: the
first key encrypts, every key decrypts, and :meth:`FieldCipher.rotate` re-encrypts an old
value under the newest key. Keys come from ``OPENVISIT_FIELD_ENCRYPTION_KEYS``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from openvisit.config import Settings
from openvisit.errors import ConfigurationError


def derive_key(secret: str, *, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` derived from a secret with HKDF-SHA256 (RFC 5869)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return hkdf.derive(secret.encode())


def generate_key() -> str:
    """A new random Fernet key, for ``OPENVISIT_FIELD_ENCRYPTION_KEYS``."""
    return Fernet.generate_key().decode()


class FieldCipher:
    """Encrypts and decrypts short text fields; the first key encrypts, all keys decrypt."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigurationError("No field encryption key configured.")
        #: The keys, newest first: :class:`openvisit.privacy.refs.PatientRefs` derives its
        #: keyed hashes from them, so one rotation renews both.
        self.keys = list(keys)
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except ValueError as exc:
            raise ConfigurationError(
                "OPENVISIT_FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key "
                "(32 url-safe base64-encoded bytes); generate one with `openvisit keys generate`."
            ) from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldCipher:
        keys = settings.encryption_keys()
        if not keys:
            # Development only (Settings refuses this elsewhere): derive from the secret key.
            derived = derive_key(settings.secret_key, purpose="openvisit field encryption")
            keys = [base64.urlsafe_b64encode(derived).decode()]
        return cls(keys)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """Return the plaintext; raises :class:`ConfigurationError` if no key fits."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ConfigurationError(
                "A stored value could not be decrypted with any configured key: was a key "
                "removed from OPENVISIT_FIELD_ENCRYPTION_KEYS before rotation finished?"
            ) from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` under the newest key (for `openvisit keys rotate`)."""
        return self._fernet.rotate(token.encode()).decode()


class KeyedHasher:
    """HMAC-SHA256 of identifiers (phone numbers, e-mail) so they can be matched, not read."""

    def __init__(self, secret: str) -> None:
        self._key = derive_key(secret, purpose="openvisit recipient hash")

    def hash(self, value: str) -> str:
        return hmac.new(self._key, value.strip().lower().encode(), hashlib.sha256).hexdigest()


def mask_phone(e164: str) -> str:
    """``+420601123456`` → ``+42*******456``: enough for a person to recognise, no more."""
    if len(e164) <= 6:
        return "*" * len(e164)
    return e164[:3] + "*" * (len(e164) - 6) + e164[-3:]


def mask_email(address: str) -> str:
    """``alex.sample@example.org`` → ``a***@example.org``."""
    local, _, domain = address.partition("@")
    return (local[:1] + "***@" + domain) if domain else "***"
