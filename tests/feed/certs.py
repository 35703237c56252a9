"""Self-signed certificates made in the test (``cryptography``): RSA 2048, EC P-384, expired."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Issued:
    key: CertificateIssuerPrivateKeyTypes
    certificate: x509.Certificate
    kind: str = "rsa"

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def issue(
    *,
    kind: str = "rsa",
    common_name: str = "Test EHR interface engine",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    rsa_bits: int = 2048,
    curve: ec.EllipticCurve | None = None,
) -> Issued:
    """A self-signed certificate valid from yesterday for a year unless told otherwise."""
    key: CertificateIssuerPrivateKeyTypes
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        key = ec.generate_private_key(curve or ec.SECP384R1())
    now = datetime.now(UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Hospital"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return Issued(key=key, certificate=certificate, kind=kind)
