"""Epic's legacy encrypted context link ("context-aware linking"), the second launch style.

Spec: EHR-SPEC §2 (public facts): Epic AES-encrypts a query string
``SessionID=…&ConferenceID=…&ExternalID=…&ExternalIDType=…&FirstName=…&LastName=…&
Timestamp=<unix s>&LinkValidityPeriod=<min>&CustomData1=<department>`` and passes it as one URL
parameter; AES-256 keys are 32 bytes given in base64, AES-128 keys are the SHA-1 digest of a
plain-text secret (first 16 bytes). Cipher mode, IV and padding are not public, so they are
configurable here (*judgement*): GCM with a 12-byte nonce prepended (the default: the only
authenticated mode, NIST SP 800-38D), or, for legacy Epic builds, CBC with a zero IV, CBC with
the IV prepended, or ECB, with PKCS#7 padding (RFC 5652 §6.3). The block modes carry no
integrity check; :mod:`openvisit.launch.epic_config` lets them be used only on an admin's
explicit opt-in.

Contract: :func:`decrypt_epic_link` returns an :class:`EpicContext` or raises
:class:`~openvisit.smart.errors.EpicLinkInvalid` (undecryptable or unreadable; one message for
every failure so the link is no padding oracle) or
:class:`~openvisit.smart.errors.EpicLinkExpired` once ``Timestamp + LinkValidityPeriod`` has
passed. Patient names in the link are discarded: they are never returned, logged or stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import parse_qsl, quote, unquote, urlencode

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from openvisit.errors import ConfigurationError
from openvisit.smart.errors import EpicLinkExpired, EpicLinkInvalid


class EpicCipherMode(StrEnum):
    """How the link's ciphertext is laid out (not public; chosen per Epic endpoint)."""

    CBC_ZERO_IV = "cbc-zero-iv"
    CBC_IV_PREFIX = "cbc-iv-prefix"
    ECB = "ecb"
    GCM = "gcm"


_FIELDS = {
    "sessionid": "session_id",
    "conferenceid": "conference_id",
    "externalid": "external_id",
    "externalidtype": "external_id_type",
    "timestamp": "timestamp",
    "linkvalidityperiod": "link_validity_minutes",
}
#: Read only to be thrown away; listed so the intent is explicit (DESIGN §2.10: no names).
DISCARDED_FIELDS = frozenset({"firstname", "lastname"})
_ZERO_IV = bytes(16)


def epic_key_from_base64(value: str) -> bytes:
    """Return the AES-256 key given as 32 bytes in base64; raise ``ConfigurationError``."""
    try:
        key = base64.b64decode(_standard_b64(value), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigurationError(
            "The Epic context-link key must be 32 bytes encoded in base64 (AES-256); for "
            "AES-128 enter the plain-text secret instead."
        )
    return key


def epic_key_from_secret(secret: str) -> bytes:
    """Return the AES-128 key: the first 16 bytes of SHA-1 of the UTF-8 secret."""
    if not secret:
        raise ConfigurationError("The Epic context-link secret is empty.")
    # SHA-1 is what Epic's key derivation uses; it is not used here for integrity.
    return hashlib.sha1(secret.encode("utf-8"), usedforsecurity=False).digest()[:16]


@dataclass(frozen=True)
class EpicContext:
    """The non-PHI fields of a decrypted Epic context link.

    ``department`` is ``CustomData1``; ``custom_data`` holds every ``CustomDataN`` as sent.
    """

    session_id: str | None
    conference_id: str | None
    external_id: str | None
    external_id_type: str | None
    timestamp: int
    link_validity_minutes: int
    department: str | None
    custom_data: Mapping[str, str] = field(default_factory=dict)

    @property
    def expires_at(self) -> int:
        """Unix time after which the link is refused."""
        return self.timestamp + self.link_validity_minutes * 60


def _standard_b64(text: str) -> str:
    # A standard-base64 '+' arrives as ' ' when the link was not percent-encoded by Epic.
    cleaned = unquote(text.strip()).replace(" ", "+").replace("-", "+").replace("_", "/")
    return cleaned + "=" * (-len(cleaned) % 4)


def _invalid() -> EpicLinkInvalid:
    return EpicLinkInvalid(
        "This Epic visit link could not be read. Open the visit again from Epic; if every link "
        "fails, the context-link key or cipher mode configured for this Epic endpoint does not "
        "match Epic's (check test vs production)."
    )


def _decrypt(data: bytes, *, key: bytes, mode: EpicCipherMode) -> bytes:
    if mode is EpicCipherMode.GCM:
        if len(data) < 12 + 16:
            raise _invalid()
        try:
            return AESGCM(key).decrypt(data[:12], data[12:], None)
        except InvalidTag:
            raise _invalid() from None
    if mode is EpicCipherMode.CBC_IV_PREFIX:
        iv, data = data[:16], data[16:]
        cipher_mode: modes.CBC | modes.ECB = modes.CBC(iv)
    elif mode is EpicCipherMode.CBC_ZERO_IV:
        cipher_mode = modes.CBC(_ZERO_IV)
    else:
        cipher_mode = modes.ECB()  # noqa: S305 - Epic's layout, not our choice
    if not data or len(data) % 16:
        raise _invalid()
    decryptor = Cipher(algorithms.AES(key), cipher_mode).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise _invalid() from None


def _parse(plain: bytes) -> tuple[dict[str, str], dict[str, str]]:
    try:
        text = plain.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise _invalid() from None
    known: dict[str, str] = {}
    custom: dict[str, str] = {}
    for name, value in pairs:
        lowered = name.lower()
        if lowered in DISCARDED_FIELDS:
            continue
        if lowered in _FIELDS:
            if _FIELDS[lowered] in known:
                raise _invalid()  # a repeated field makes the link ambiguous
            known[_FIELDS[lowered]] = value
        elif lowered.startswith("customdata") and lowered[10:].isdigit():
            custom[f"CustomData{lowered[10:]}"] = value
        # Anything else is dropped: an unknown field might carry PHI.
    return known, custom


def decrypt_epic_link(
    token: str,
    *,
    key: bytes,
    mode: EpicCipherMode = EpicCipherMode.GCM,
    now: float | None = None,
    default_validity_minutes: int | None = None,
    max_clock_skew_seconds: int = 300,
) -> EpicContext:
    """Decrypt, parse and time-check an Epic context link (URL-safe or standard base64).

    ``key`` comes from :func:`epic_key_from_base64` or :func:`epic_key_from_secret`.
    ``default_validity_minutes`` applies only when the link has no ``LinkValidityPeriod``;
    without it such a link is invalid. A ``Timestamp`` more than ``max_clock_skew_seconds``
    in the future is refused.
    """
    if len(key) not in (16, 32):
        raise ConfigurationError("The Epic context-link key must be 16 or 32 bytes.")
    if not token or len(token) > 8192:
        raise _invalid()
    try:
        data = base64.b64decode(_standard_b64(token), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid() from None
    known, custom = _parse(_decrypt(data, key=key, mode=mode))
    validity_text = known.get("link_validity_minutes")
    try:
        timestamp = int(known["timestamp"])
        if validity_text is not None:
            validity = int(validity_text)
        elif default_validity_minutes is not None:
            validity = default_validity_minutes
        else:
            raise _invalid()
    except (KeyError, ValueError):
        raise _invalid() from None
    if validity < 0 or timestamp <= 0:
        raise _invalid()
    context = EpicContext(
        session_id=known.get("session_id") or None,
        conference_id=known.get("conference_id") or None,
        external_id=known.get("external_id") or None,
        external_id_type=known.get("external_id_type") or None,
        timestamp=timestamp,
        link_validity_minutes=validity,
        department=custom.get("CustomData1") or None,
        custom_data=custom,
    )
    current = time.time() if now is None else now
    if timestamp > current + max_clock_skew_seconds:
        raise EpicLinkInvalid(
            "This Epic visit link claims to be created in the future, so the clocks of Epic "
            "and OpenVisit disagree. Ask the operator to check time synchronisation (NTP)."
        )
    if current > context.expires_at:
        expired = datetime.fromtimestamp(context.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise EpicLinkExpired(
            f"This visit link expired at {expired} (Epic made it valid for {validity} "
            "minutes). Go back to Epic and open the visit again to get a fresh link."
        )
    return context


def encrypt_epic_link(
    fields: Mapping[str, str],
    *,
    key: bytes,
    mode: EpicCipherMode = EpicCipherMode.GCM,
    url_safe: bool = True,
    iv: bytes | None = None,
) -> str:
    """Encrypt ``fields`` the way Epic does (for the sandbox EHR and tests); return base64.

    ``iv`` is the CBC IV (``cbc-iv-prefix``) or the GCM nonce; random when omitted.
    """
    plain = urlencode(list(fields.items()), quote_via=quote).encode("utf-8")
    if mode is EpicCipherMode.GCM:
        nonce = iv if iv is not None else os.urandom(12)
        data = nonce + AESGCM(key).encrypt(nonce, plain, None)
    else:
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plain) + padder.finalize()
        prefix = b""
        if mode is EpicCipherMode.CBC_IV_PREFIX:
            prefix = iv if iv is not None else os.urandom(16)
            cipher_mode: modes.CBC | modes.ECB = modes.CBC(prefix)
        elif mode is EpicCipherMode.CBC_ZERO_IV:
            cipher_mode = modes.CBC(_ZERO_IV)
        else:
            cipher_mode = modes.ECB()  # noqa: S305 - Epic's layout, not our choice
        encryptor = Cipher(algorithms.AES(key), cipher_mode).encryptor()
        data = prefix + encryptor.update(padded) + encryptor.finalize()
    encoder = base64.urlsafe_b64encode if url_safe else base64.b64encode
    return encoder(data).decode("ascii")
