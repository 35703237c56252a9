"""Uploaded public certificates that prove inbound scheduling data comes from the EHR.

EHR-SPEC §6: the admin uploads a base64 ``.cer`` (public key only) per environment; PEM, base64
DER without armour and raw DER are accepted, validity dates are checked and the SHA-256
thumbprint is kept. X.509 is RFC 5280; the keys must be able to verify one of the JWS
algorithms the feed accepts (RFC 7518 §3: RS256/RS384 need RSA ≥ 2048 bits, ES384 needs
P-384), so a certificate that could never verify anything is refused at upload, not at the
first signed message.

Several certificates may be active per environment at once: that is how a sender rotates its
key without an outage (upload the new one, switch the sender, retire the old one).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    load_der_private_key,
    load_der_public_key,
    pkcs12,
)
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import repository
from openvisit.audit import record
from openvisit.errors import InvalidInput
from openvisit.models import Certificate
from openvisit.models.endpoint import ENVIRONMENTS

#: Uploads larger than this are not a single certificate.
MAX_CERTIFICATE_BYTES = 64 * 1024
MIN_RSA_BITS = 2048
#: A certificate made a moment ago on a machine whose clock runs a little ahead is still taken.
CLOCK_SKEW = timedelta(minutes=5)

PRIVATE_KEY_MESSAGE = "this file contains a PRIVATE key — upload only the public certificate (.cer)"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_BASE64 = re.compile(rb"[A-Za-z0-9+/=_-]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedCertificate:
    """What OpenVisit keeps of, and shows about, one X.509 certificate."""

    subject: str
    issuer: str
    thumbprint_sha256: str
    not_before: datetime
    not_after: datetime
    der: bytes
    public_key_type: str


def parse_certificate(data: bytes, *, now: datetime) -> ParsedCertificate:
    """Read one X.509 certificate from PEM, unarmoured base64 DER or raw DER.

    Whitespace and line breaks in base64 are tolerated; of a PEM chain the first certificate
    (the sender's own) is taken. Returns the :class:`ParsedCertificate`. Raises
    :class:`~openvisit.errors.InvalidInput` with a message an admin can act on for a private
    key (PEM, DER or a PKCS#12 bundle), a public key or CSR without a certificate, an expired
    or not-yet-valid certificate, a key that cannot verify RS256/RS384/ES384, and anything
    else that is not a certificate.
    """
    if not data or not data.strip():
        raise InvalidInput("The file is empty; upload the sender's public certificate (.cer).")
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise InvalidInput(
            f"The file is {len(data)} bytes; a certificate is a few kilobytes. Upload only the "
            "public certificate (.cer), not a bundle or archive."
        )
    certificate = _load(data)
    der = certificate.public_bytes(Encoding.DER)
    not_before = certificate.not_valid_before_utc
    not_after = certificate.not_valid_after_utc
    moment = now if now.tzinfo else now.replace(tzinfo=UTC)
    if not_after <= moment:
        raise InvalidInput(
            f"This certificate expired on {not_after:%Y-%m-%d %H:%M} UTC; ask the EHR team for "
            "the current one."
        )
    if not_before > moment + CLOCK_SKEW:
        raise InvalidInput(
            f"This certificate is not valid until {not_before:%Y-%m-%d %H:%M} UTC; upload it "
            "again from that date, or check the clock of the machine that issued it."
        )
    return ParsedCertificate(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        thumbprint_sha256=hashlib.sha256(der).hexdigest(),
        not_before=not_before,
        not_after=not_after,
        der=der,
        public_key_type=_key_type(certificate),
    )


def _load(data: bytes) -> x509.Certificate:
    # Binary DER is taken byte for byte (its last byte may well be 0x20 or 0x0A): the outer
    # SEQUENCE says how long it is, so only what follows that (a line end some tool added)
    # is dropped.
    if data[:1] == b"\x30":
        length = _der_length(data)
        if length is not None and len(data) > length and not data[length:].strip():
            data = data[:length]
        return _from_der(data)
    data = data.strip()
    if b"-----BEGIN" in data:
        return _from_pem(data)
    compact = b"".join(data.split())
    if not _BASE64.fullmatch(compact):
        raise InvalidInput(
            "This is not a certificate: expected PEM (-----BEGIN CERTIFICATE-----), base64 or "
            "binary DER (.cer)."
        )
    try:
        der = base64.b64decode(compact.replace(b"-", b"+").replace(b"_", b"/") + b"==")
    except (binascii.Error, ValueError):
        raise InvalidInput("The base64 text of this file is damaged; export it again.") from None
    return _from_der(der)


def _der_length(data: bytes) -> int | None:
    """The total length the DER header at the start of ``data`` declares (X.690 §8.1.3)."""
    if len(data) < 2:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def _from_pem(data: bytes) -> x509.Certificate:
    blocks = _PEM_BLOCK.findall(data)
    kinds = [kind.decode() for kind, _ in blocks]
    if any("PRIVATE KEY" in kind for kind in kinds):
        raise InvalidInput(PRIVATE_KEY_MESSAGE)
    for kind, body in blocks:
        if kind in (b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"):
            try:
                return x509.load_der_x509_certificate(base64.b64decode(b"".join(body.split())))
            except (ValueError, binascii.Error):
                raise InvalidInput(
                    "The PEM certificate in this file is damaged; export it again."
                ) from None
    if "PUBLIC KEY" in kinds or "RSA PUBLIC KEY" in kinds:
        raise InvalidInput(
            "This file holds a bare public key; upload the X.509 certificate (.cer) that "
            "contains it, so its validity dates can be checked."
        )
    if any("REQUEST" in kind for kind in kinds):
        raise InvalidInput(
            "This file is a certificate signing request (CSR), not a certificate; upload the "
            "certificate that was issued for it."
        )
    raise InvalidInput(
        "No certificate found in this PEM file (no -----BEGIN CERTIFICATE----- block)."
    )


def _from_der(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        pass
    if _is_private_key(der):
        raise InvalidInput(PRIVATE_KEY_MESSAGE)
    try:
        load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    else:
        raise InvalidInput(
            "This file holds a bare public key; upload the X.509 certificate (.cer) that "
            "contains it, so its validity dates can be checked."
        )
    raise InvalidInput(
        "This is not a certificate: the file could not be read as PEM, base64 or binary DER "
        "(.cer). Export the sender's public certificate again."
    )


def _is_private_key(der: bytes) -> bool:
    try:
        load_der_private_key(der, password=None)
    except TypeError:
        return True  # an encrypted private key: still a private key
    except (ValueError, UnsupportedAlgorithm):
        pass
    else:
        return True
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(der, None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # Password-protected PKCS#12 fails here too; its outer structure still says "PFX".
        return _looks_like_pkcs12(der)
    return key is not None or cert is not None


def _looks_like_pkcs12(der: bytes) -> bool:
    # PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo, ... }: 02 01 03 after the
    # outer SEQUENCE header.
    if der[:1] != b"\x30" or len(der) < 8:
        return False
    header = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    return der[header : header + 3] == b"\x02\x01\x03"


def _key_type(certificate: x509.Certificate) -> str:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidInput(
                f"This certificate's RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} "
                "are required (RS256/RS384)."
            )
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP384R1):
            raise InvalidInput(
                f"This certificate's key is on the elliptic curve {key.curve.name}; only P-384 "
                "(ES384) or RSA keys (RS256/RS384) can sign scheduling messages."
            )
        return "EC P-384"
    raise InvalidInput(
        f"This certificate holds a {type(key).__name__.removesuffix('PublicKey')} key; only RSA "
        "(RS256/RS384) or EC P-384 (ES384) keys can sign scheduling messages."
    )


async def store_certificate(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    environment: str,
    data: bytes,
    actor: str,
    now: datetime,
) -> Certificate:
    """Parse ``data`` and keep it as an active certificate of the environment (audited).

    Nothing is deactivated: several certificates may be active for rotation. Uploading a
    certificate that is already stored for this organisation and environment returns that row
    (re-activated if it had been retired). Raises :class:`InvalidInput` for an unknown
    environment and for everything :func:`parse_certificate` refuses.
    """
    if environment not in ENVIRONMENTS:
        raise InvalidInput(
            f"Unknown environment {environment!r}; choose one of: {', '.join(ENVIRONMENTS)}."
        )
    parsed = parse_certificate(data, now=now)
    existing = await repository.certificate_by_thumbprint(
        session, organisation_id=organisation_id, environment=environment,
        thumbprint=parsed.thumbprint_sha256)
    if existing is not None:
        if not existing.is_active:
            existing.is_active = True
            await session.flush()
            await record(
                session,
                actor=actor,
                action="certificate.reactivate",
                obj=existing,
                organisation_id=organisation_id,
            )
        return existing
    certificate = Certificate(
        organisation_id=organisation_id,
        environment=environment,
        subject=parsed.subject[:500],
        thumbprint_sha256=parsed.thumbprint_sha256,
        not_before=parsed.not_before,
        not_after=parsed.not_after,
        der=parsed.der,
        is_active=True,
    )
    session.add(certificate)
    await session.flush()
    await record(
        session,
        actor=actor,
        action="certificate.upload",
        obj=certificate,
        organisation_id=organisation_id,
    )
    return certificate


async def active_certificates(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    environment: str,
    now: datetime | None = None,
) -> list[Certificate]:
    """The organisation's active certificates for ``environment``, newest first.

    With ``now``, only those valid at that moment (inside not-before/not-after).
    """
    return await repository.active_certificates(
        session, organisation_id=organisation_id, environment=environment, valid_at=now)
