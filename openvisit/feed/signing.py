"""Verify signed scheduling payloads against the uploaded certificates (EHR-SPEC §6).

The scheme (a *judgement*, kept behind the small :class:`Verifier` protocol so another can be
plugged in) is a JWS, RFC 7515, in its compact serialisation (§7.1), in one of two forms:

- ``Content-Type: application/jose``: the body is a compact JWS whose payload is the HL7
  message; the claims travel as protected header parameters (RFC 7519 §5.3, "replicating
  claims as header parameters"), so they are covered by the signature.
- the HL7 message as the body, with ``Authorization: Bearer <JWS>`` whose JSON payload holds
  the claims plus ``body_sha256``: the SHA-256 of the exact body bytes (hex or base64url).

Algorithms RS256/RS384/ES384 only (RFC 7518 §3.3, §3.4); ``none`` and HS* are refused before
any key is touched (RFC 8725 §3.1). Claims: ``iss`` = the endpoint's sender id, ``aud`` =
``{public_url}/hl7/siu``, ``iat``/``exp`` within ``hl7_jws_skew_seconds``, ``exp`` at most an
hour ahead, and a ``jti`` that is refused when seen before. The key is the public key of one of
the organisation's active certificates for the endpoint's environment; a ``x5t#S256`` header
(RFC 7515 §4.1.8) picks it, otherwise each is tried.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import JWSRegistry
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.certificates import active_certificates
from openvisit.errors import NotAuthenticated
from openvisit.feed.senders import FeedEndpoint
from openvisit.models import Certificate

ALGORITHMS = ("RS256", "RS384", "ES384")
JOSE_MEDIA_TYPE = "application/jose"
MAX_LIFETIME = timedelta(hours=1)
_REGISTRY = JWSRegistry(algorithms=list(ALGORITHMS), strict_check_header=False)
# HL7 messages and header-borne claims exceed joserfc's defaults (512-byte header, 128 kB).
_REGISTRY.max_header_length = 16 * 1024
_REGISTRY.max_payload_length = 4 * 1024 * 1024


class SignatureRefused(NotAuthenticated):
    """The payload's signature or claims do not prove it comes from the EHR (HTTP 401)."""

    code = "hl7_signature_refused"


@dataclass(frozen=True, slots=True)
class VerifiedPayload:
    """A payload whose signature and claims checked out; ``jti`` is not yet consumed."""

    message: bytes
    issuer: str
    jti: str
    expires_at: datetime
    thumbprint_sha256: str


class Verifier(Protocol):
    """Proves an inbound HTTPS payload comes from the EHR; returns the HL7 message."""

    async def verify(
        self,
        session: AsyncSession,
        *,
        endpoint: FeedEndpoint,
        body: bytes,
        content_type: str,
        authorization: str | None,
        audience: str,
        now: datetime,
    ) -> VerifiedPayload: ...


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _public_key(certificate: Certificate) -> RSAKey | ECKey | None:
    key = x509.load_der_x509_certificate(certificate.der).public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return RSAKey.import_key(key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ECKey.import_key(key)
    return None


def _fits(key: RSAKey | ECKey, alg: str) -> bool:
    return isinstance(key, RSAKey) if alg.startswith("RS") else isinstance(key, ECKey)


@dataclass(frozen=True)
class JwsVerifier:
    """The EHR-SPEC §6 scheme described in the module docstring."""

    skew: timedelta = timedelta(minutes=5)

    async def verify(
        self,
        session: AsyncSession,
        *,
        endpoint: FeedEndpoint,
        body: bytes,
        content_type: str,
        authorization: str | None,
        audience: str,
        now: datetime,
    ) -> VerifiedPayload:
        """Check the signature and claims; raises :class:`SignatureRefused` saying why."""
        media_type = content_type.split(";", 1)[0].strip().lower()
        scheme, _, credentials = (authorization or "").partition(" ")
        if media_type == JOSE_MEDIA_TYPE:
            token, detached = body.strip(), False
        elif scheme.lower() == "bearer" and credentials.strip():
            token, detached = credentials.strip().encode("ascii", "replace"), True
        else:
            raise SignatureRefused(
                "The payload is not signed: send a compact JWS as application/jose, or the HL7 "
                "message with Authorization: Bearer <JWS> carrying body_sha256."
            )
        header = _header(token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise SignatureRefused(
                f"The JWS algorithm {str(alg)[:20]!r} is not accepted; sign with "
                f"{', '.join(ALGORITHMS)} (never none or HS*)."
            )
        environment = endpoint.endpoint.environment
        certificates = await active_certificates(
            session,
            organisation_id=endpoint.endpoint.organisation_id,
            environment=environment,
            now=now,
        )
        if not certificates:
            raise SignatureRefused(
                f"No valid certificate is uploaded for the {environment} environment; upload the "
                "sender's public certificate (.cer) first."
            )
        verified, certificate = _verify(
            token, alg=alg, header=header, certificates=certificates, environment=environment
        )
        if detached:
            claims = _json_claims(verified.payload)
            _check_body_hash(claims, body)
            message = body
        else:
            claims, message = header, verified.payload
        issuer, jti, expires = self._claims(claims, endpoint=endpoint, audience=audience, now=now)
        return VerifiedPayload(
            message=message,
            issuer=issuer,
            jti=jti,
            expires_at=expires,
            thumbprint_sha256=certificate.thumbprint_sha256,
        )

    def _claims(
        self, claims: dict[str, Any], *, endpoint: FeedEndpoint, audience: str, now: datetime
    ) -> tuple[str, str, datetime]:
        for name in ("iss", "aud", "iat", "exp", "jti"):
            if name not in claims:
                raise SignatureRefused(
                    f"The signed claims lack {name!r}; iss, aud, iat, exp and jti are all required."
                )
        issuer = claims["iss"]
        if not isinstance(issuer, str) or issuer not in endpoint.jws_issuers:
            expected = ", ".join(sorted(endpoint.jws_issuers)) or "(no sender configured)"
            raise SignatureRefused(
                f"iss {str(issuer)[:80]!r} is not this endpoint's sender; expected {expected}."
            )
        aud = claims["aud"]
        audiences = aud if isinstance(aud, list) else [aud]
        if audience not in audiences:
            raise SignatureRefused(f"aud must be {audience}.")
        iat, exp = _seconds(claims, "iat"), _seconds(claims, "exp")
        stamp = now.timestamp()
        skew = self.skew.total_seconds()
        if iat > stamp + skew:
            raise SignatureRefused("iat is in the future; check the sender's clock.")
        if exp < stamp - skew:
            raise SignatureRefused(
                "The signature has expired (exp is past); sign the message again when sending it."
            )
        if exp > stamp + MAX_LIFETIME.total_seconds() + skew:
            raise SignatureRefused(
                "exp is more than an hour ahead; sign each delivery with a short lifetime."
            )
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 200:
            raise SignatureRefused("jti must be a unique string of at most 200 characters.")
        return issuer, jti, datetime.fromtimestamp(exp, tz=now.tzinfo)


def _header(token: bytes) -> dict[str, Any]:
    parts = token.split(b".")
    if len(parts) != 3:
        raise SignatureRefused("The signature is not a compact JWS (three base64url parts).")
    try:
        header = json.loads(_b64url(parts[0].decode("ascii")))
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise SignatureRefused("The JWS header is not base64url-encoded JSON.") from None
    if not isinstance(header, dict):
        raise SignatureRefused("The JWS header is not a JSON object.")
    return header


def _verify(
    token: bytes,
    *,
    alg: str,
    header: dict[str, Any],
    certificates: list[Certificate],
    environment: str,
) -> tuple[jws.CompactSignature, Certificate]:
    wanted = header.get("x5t#S256")
    if isinstance(wanted, str):
        try:
            thumbprint = _b64url(wanted).hex()
        except (ValueError, binascii.Error):
            raise SignatureRefused("The x5t#S256 header is not base64url.") from None
        certificates = [c for c in certificates if c.thumbprint_sha256 == thumbprint]
        if not certificates:
            raise SignatureRefused(
                f"The payload was signed with a certificate (x5t#S256 {thumbprint[:16]}…) that "
                f"is not uploaded, or not valid, for the {environment} environment."
            )
    for certificate in certificates:
        key = _public_key(certificate)
        if key is None or not _fits(key, alg):
            continue
        try:
            return jws.deserialize_compact(
                token, key, algorithms=[alg], registry=_REGISTRY
            ), certificate
        except JoseError:
            continue
    raise SignatureRefused(
        f"The signature does not verify with any certificate uploaded for the {environment} "
        "environment (wrong key, or the payload was changed)."
    )


def _json_claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise SignatureRefused("The bearer JWS payload is not JSON claims.") from None
    if not isinstance(claims, dict):
        raise SignatureRefused("The bearer JWS payload is not a JSON object.")
    return claims


def _check_body_hash(claims: dict[str, Any], body: bytes) -> None:
    stated = claims.get("body_sha256")
    if not isinstance(stated, str):
        raise SignatureRefused("The bearer JWS lacks body_sha256 (SHA-256 of the body).")
    digest = hashlib.sha256(body).digest()
    accepted = {digest.hex(), base64.urlsafe_b64encode(digest).rstrip(b"=").decode()}
    if stated.strip().rstrip("=") not in accepted and stated.lower() not in accepted:
        raise SignatureRefused(
            "body_sha256 does not match the body: it was changed in transit "
            "or hashed before a re-encoding."
        )


def _seconds(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignatureRefused(f"{name} must be a NumericDate (seconds since 1970).")
    return float(value)
