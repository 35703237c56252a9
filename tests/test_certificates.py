"""Uploaded sender certificates: formats accepted, private keys and bad dates refused, storage."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    pkcs12,
)
from sqlalchemy import select

from openvisit.certificates import (
    PRIVATE_KEY_MESSAGE,
    active_certificates,
    parse_certificate,
    store_certificate,
)
from openvisit.context import AppContext
from openvisit.errors import InvalidInput
from openvisit.models import AuditLog, Certificate, Organisation
from tests.feed.certs import issue

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def rsa_cert():  # type: ignore[no-untyped-def]
    return issue(kind="rsa")


@pytest.fixture(scope="module")
def ec_cert():  # type: ignore[no-untyped-def]
    return issue(kind="ec")


def test_it_reads_pem_base64_and_raw_der_alike(rsa_cert) -> None:  # type: ignore[no-untyped-def]
    b64 = base64.b64encode(rsa_cert.der)
    wrapped = b"\r\n".join(b64[i : i + 64] for i in range(0, len(b64), 64)) + b"\r\n"
    spaced = b"  " + b" \n\t".join(b64[i : i + 10] for i in range(0, len(b64), 10)) + b"\n\n"

    parsed = [
        parse_certificate(data, now=NOW)
        for data in (rsa_cert.pem, b64, wrapped, spaced, rsa_cert.der)
    ]

    assert len({p.thumbprint_sha256 for p in parsed}) == 1
    first = parsed[0]
    assert first.thumbprint_sha256 == hashlib.sha256(rsa_cert.der).hexdigest()
    assert first.thumbprint_sha256 == first.thumbprint_sha256.lower()
    assert first.der == rsa_cert.der
    assert first.subject == "O=Example Hospital,CN=Test EHR interface engine"
    assert first.issuer == first.subject
    assert first.public_key_type == "RSA 2048"
    assert first.not_before.tzinfo is not None
    assert first.not_after - first.not_before > timedelta(days=300)


def test_it_keeps_binary_der_that_ends_in_a_whitespace_byte() -> None:
    # A DER certificate's last byte is part of its signature: 0x0A or 0x20 is not a line end.
    for _ in range(5000):
        cert = issue(kind="ec")
        if cert.der[-1:] in (b" ", b"\n", b"\r", b"\t"):
            break
    else:
        pytest.fail("no certificate ending in a whitespace byte was made")

    assert parse_certificate(cert.der, now=NOW).der == cert.der
    assert parse_certificate(cert.der + b"\r\n", now=NOW).der == cert.der


def test_it_reads_an_ec_p384_certificate(ec_cert) -> None:  # type: ignore[no-untyped-def]
    parsed = parse_certificate(ec_cert.pem, now=NOW)

    assert parsed.public_key_type == "EC P-384"


def test_it_takes_the_first_certificate_of_a_pem_chain(rsa_cert, ec_cert) -> None:  # type: ignore[no-untyped-def]
    parsed = parse_certificate(ec_cert.pem + rsa_cert.pem, now=NOW)

    assert parsed.der == ec_cert.der


@pytest.mark.parametrize(
    "form", ["pem", "pem-rsa", "der", "base64-der", "pkcs12", "encrypted-pem", "pem-with-cert"]
)
def test_it_refuses_private_keys(rsa_cert, form: str) -> None:  # type: ignore[no-untyped-def]
    key = rsa_cert.key
    data = {
        "pem": lambda: key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
        "pem-rsa": lambda: key.private_bytes(
            Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption()
        ),
        "der": lambda: key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()),
        "base64-der": lambda: base64.b64encode(
            key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        ),
        "pkcs12": lambda: pkcs12.serialize_key_and_certificates(
            b"engine", key, rsa_cert.certificate, None, BestAvailableEncryption(b"pw")
        ),
        "encrypted-pem": lambda: key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")
        ),
        "pem-with-cert": lambda: rsa_cert.pem + rsa_cert.key_pem,
    }[form]()

    with pytest.raises(InvalidInput) as caught:
        parse_certificate(data, now=NOW)

    assert caught.value.message == PRIVATE_KEY_MESSAGE


def test_it_refuses_an_expired_certificate() -> None:
    old = issue(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=2))

    with pytest.raises(InvalidInput, match=r"expired on \d{4}-\d\d-\d\d"):
        parse_certificate(old.pem, now=NOW)


def test_it_refuses_a_certificate_not_yet_valid() -> None:
    future = issue(not_before=NOW + timedelta(days=3), not_after=NOW + timedelta(days=300))

    with pytest.raises(InvalidInput, match="is not valid until"):
        parse_certificate(future.pem, now=NOW)


def test_it_judges_validity_at_the_given_moment(rsa_cert) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="expired"):
        parse_certificate(rsa_cert.pem, now=NOW + timedelta(days=400))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"hello, this is not a certificate!", "not a certificate"),
        (b"\x30\x03\x02\x01\x05", "not a certificate"),
        (b"QUJDREVG", "not a certificate"),
        (b"-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n", "damaged"),
        (b"-----BEGIN FOO-----\nQUJD\n-----END FOO-----\n", "No certificate found"),
        (b"\x00" * 70_000, "a few kilobytes"),
    ],
)
def test_it_refuses_garbage_with_a_clear_message(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_certificate(data, now=NOW)


def test_it_refuses_a_bare_public_key_and_a_csr(rsa_cert) -> None:  # type: ignore[no-untyped-def]
    public = rsa_cert.key.public_key()
    for data in (
        public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
    ):
        with pytest.raises(InvalidInput, match="bare public key"):
            parse_certificate(data, now=NOW)
    csr = b"-----BEGIN CERTIFICATE REQUEST-----\nQUJD\n-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(InvalidInput, match="signing request"):
        parse_certificate(csr, now=NOW)


def test_it_refuses_keys_that_cannot_verify_an_accepted_algorithm() -> None:
    with pytest.raises(InvalidInput, match="1024 bits"):
        parse_certificate(issue(rsa_bits=1024).pem, now=NOW)
    with pytest.raises(InvalidInput, match="secp256r1"):
        parse_certificate(issue(kind="ec", curve=ec.SECP256R1()).pem, now=NOW)


def test_it_reads_a_certificate_made_by_the_openssl_command_line(tmp_path: Path) -> None:
    key, cer = tmp_path / "engine.key", tmp_path / "engine.cer"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cer),
            "-days",
            "30",
            "-subj",
            "/CN=Rhapsody test/O=Example Hospital",
            "-outform",
            "DER",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    fingerprint = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-in", str(cer), "-noout", "-fingerprint", "-sha256"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    as_base64 = subprocess.run(
        ["openssl", "base64", "-in", str(cer)], check=True, capture_output=True, timeout=60
    ).stdout

    # openssl stamps notBefore with the real clock; NOW was taken when the module was imported.
    now = datetime.now(UTC)
    for data in (cer.read_bytes(), as_base64):
        parsed = parse_certificate(data, now=now)
        assert (
            parsed.thumbprint_sha256
            == fingerprint.split("=", 1)[1].strip().replace(":", "").lower()
        )
        assert parsed.subject == "O=Example Hospital,CN=Rhapsody test"
    with pytest.raises(InvalidInput) as caught:
        parse_certificate(key.read_bytes(), now=now)
    assert caught.value.message == PRIVATE_KEY_MESSAGE


async def _organisation(ctx: AppContext) -> Organisation:
    async with ctx.transaction() as session:
        org = Organisation(slug="cert-org", display_name="Cert org")
        session.add(org)
        await session.flush()
        return org


async def test_it_stores_several_active_certificates_for_rotation(
    ctx: AppContext,
    rsa_cert,
    ec_cert,  # type: ignore[no-untyped-def]
) -> None:
    org = await _organisation(ctx)
    async with ctx.transaction() as session:
        first = await store_certificate(
            session,
            organisation_id=org.id,
            environment="test",
            data=rsa_cert.pem,
            actor="staff:admin",
            now=NOW,
        )
        second = await store_certificate(
            session,
            organisation_id=org.id,
            environment="test",
            data=ec_cert.der,
            actor="staff:admin",
            now=NOW,
        )
        again = await store_certificate(
            session,
            organisation_id=org.id,
            environment="test",
            data=base64.b64encode(rsa_cert.der),
            actor="cli",
            now=NOW,
        )
        await store_certificate(
            session,
            organisation_id=org.id,
            environment="production",
            data=rsa_cert.pem,
            actor="cli",
            now=NOW,
        )

    assert again.id == first.id
    async with ctx.transaction() as session:
        active = await active_certificates(session, organisation_id=org.id, environment="test")
        production = await active_certificates(
            session, organisation_id=org.id, environment="production"
        )
        later = await active_certificates(
            session, organisation_id=org.id, environment="test", now=NOW + timedelta(days=400)
        )
        audit = list(
            await session.scalars(select(AuditLog).where(AuditLog.action == "certificate.upload"))
        )

    assert {c.id for c in active} == {first.id, second.id}
    assert all(c.is_active for c in active)
    assert len(production) == 1
    assert later == []
    assert len(audit) == 3
    entry = next(a for a in audit if a.object_id == str(first.id))
    assert entry.actor == "staff:admin" and entry.organisation_id == org.id
    assert entry.after is not None
    assert entry.after["thumbprint_sha256"] == first.thumbprint_sha256
    assert "der" not in entry.after


async def test_it_refuses_an_unknown_environment_and_stores_nothing_on_refusal(
    ctx: AppContext,
    rsa_cert,  # type: ignore[no-untyped-def]
) -> None:
    org = await _organisation(ctx)
    expired = issue(not_before=NOW - timedelta(days=40), not_after=NOW - timedelta(days=1))
    async with ctx.transaction() as session:
        with pytest.raises(InvalidInput, match="Unknown environment"):
            await store_certificate(
                session,
                organisation_id=org.id,
                environment="staging",
                data=rsa_cert.pem,
                actor="cli",
                now=NOW,
            )
        with pytest.raises(InvalidInput, match="expired"):
            await store_certificate(
                session,
                organisation_id=org.id,
                environment="test",
                data=expired.pem,
                actor="cli",
                now=NOW,
            )
        assert list(await session.scalars(select(Certificate))) == []
