"""``POST /hl7/siu``: signed payloads (RFC 7515 compact JWS) accepted, everything else refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import JWSRegistry
from sqlalchemy import text

from openvisit.certificates import store_certificate
from openvisit.context import AppContext
from openvisit.feed.commands import set_hl7_senders
from openvisit.models import EhrEndpoint, utcnow

from .certs import Issued, issue
from .support import appointments, make_endpoint, read_ack, siu

SENDER = "EPIC^EPICADT"
_REGISTRY = JWSRegistry(strict_check_header=False, algorithms=["RS256", "RS384", "ES384"])
_REGISTRY.max_header_length = 8192


@pytest.fixture(scope="module")
def rsa() -> Issued:
    return issue(kind="rsa", common_name="Bridges RSA")


@pytest.fixture(scope="module")
def ec() -> Issued:
    return issue(kind="ec", common_name="Bridges EC")


@pytest.fixture(scope="module")
def stranger() -> Issued:
    return issue(kind="rsa", common_name="Not uploaded")


async def _setup(ctx: AppContext, *certs: Issued) -> EhrEndpoint:
    endpoint = await make_endpoint(ctx, senders=(SENDER,))
    async with ctx.transaction() as session:
        for cert in certs:
            await store_certificate(
                session,
                organisation_id=endpoint.organisation_id,
                environment="test",
                data=cert.pem,
                actor="test",
                now=utcnow(),
            )
    return endpoint


def _key(cert: Issued) -> RSAKey | ECKey:
    pem = cert.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return RSAKey.import_key(pem) if cert.kind == "rsa" else ECKey.import_key(pem)


def claims(ctx: AppContext, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": SENDER,
        "aud": f"{ctx.settings.public_url}/hl7/siu",
        "iat": now,
        "exp": now + 120,
        "jti": str(uuid.uuid4()),
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def compact(
    cert: Issued,
    payload: bytes,
    header: dict[str, Any],
    *,
    alg: str | None = None,
    thumbprint: bool = False,
) -> str:
    alg = alg or ("RS256" if cert.kind == "rsa" else "ES384")
    protected = {"alg": alg, **header}
    if thumbprint:
        digest = hashlib.sha256(cert.der).digest()
        protected["x5t#S256"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return jws.serialize_compact(
        protected, payload, _key(cert), algorithms=[alg], registry=_REGISTRY
    )


def _url(endpoint: EhrEndpoint) -> str:
    return f"/hl7/siu?endpoint={endpoint.id}"


async def _post_jose(
    client: httpx.AsyncClient, endpoint: EhrEndpoint, token: str
) -> httpx.Response:
    return await client.post(
        _url(endpoint), content=token, headers={"Content-Type": "application/jose"}
    )


async def test_it_accepts_a_compact_jws_whose_payload_is_the_message(
    ctx: AppContext, client: httpx.AsyncClient, rsa: Issued
) -> None:
    endpoint = await _setup(ctx, rsa)

    response = await _post_jose(client, endpoint, compact(rsa, siu(), claims(ctx)))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/hl7-v2")
    ack = read_ack(response.content)
    assert (ack.code, ack.acked_id) == ("AA", "CTRL-1")
    [appointment] = await appointments(ctx)
    assert appointment.endpoint_id == endpoint.id


async def test_it_accepts_a_bearer_jws_over_the_body_hash(
    ctx: AppContext, client: httpx.AsyncClient, rsa: Issued, ec: Issued
) -> None:
    endpoint = await _setup(ctx, rsa, ec)  # two active certificates: rotation
    body = siu(control_id="BEARER-1")
    for n, (cert, digest) in enumerate(
        (
            (ec, hashlib.sha256(body).hexdigest()),
            (rsa, base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()),
        )
    ):
        token = compact(
            cert,
            json.dumps(claims(ctx, body_sha256=digest)).encode(),
            {"typ": "JWT"},
            thumbprint=n == 0,
        )
        response = await client.post(
            "/hl7/siu",
            content=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/hl7-v2",
                "X-OpenVisit-Endpoint": str(endpoint.id),
            },
        )
        assert response.status_code == 200, response.text
        assert read_ack(response.content).code == "AA"
    assert len(await appointments(ctx)) == 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_token(payload: bytes, header: dict[str, Any], *, secret: bytes) -> str:
    # The classic confusion attack: HMAC keyed with the (public) certificate itself.
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', **header}).encode())}.{_b64(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _none_token(payload: bytes, header: dict[str, Any]) -> str:
    return f"{_b64(json.dumps({'alg': 'none', **header}).encode())}.{_b64(payload)}."


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong key", "does not verify with any certificate"),
        ("unknown thumbprint", "is not uploaded"),
        ("expired", "has expired"),
        ("future iat", "iat is in the future"),
        ("too long", "more than an hour ahead"),
        ("alg none", "'none' is not accepted"),
        ("HS256 with the public key", "'HS256' is not accepted"),
        ("wrong issuer", "is not this endpoint's sender"),
        ("wrong audience", "aud must be"),
        ("no jti", "lack 'jti'"),
        ("tampered payload", "does not verify"),
        ("unsigned", "not signed"),
        ("not a jws", "not a compact JWS"),
    ],
)
async def test_it_refuses_payloads_it_cannot_trust_with_401(
    ctx: AppContext,
    client: httpx.AsyncClient,
    rsa: Issued,
    stranger: Issued,
    case: str,
    message: str,
) -> None:
    endpoint = await _setup(ctx, rsa)
    body, now = siu(), int(time.time())
    token = {
        "wrong key": lambda: compact(stranger, body, claims(ctx)),
        "unknown thumbprint": lambda: compact(stranger, body, claims(ctx), thumbprint=True),
        "expired": lambda: compact(rsa, body, claims(ctx, iat=now - 900, exp=now - 600)),
        "future iat": lambda: compact(rsa, body, claims(ctx, iat=now + 900, exp=now + 1000)),
        "too long": lambda: compact(rsa, body, claims(ctx, exp=now + 86400)),
        "alg none": lambda: _none_token(body, claims(ctx)),
        "HS256 with the public key": lambda: _hs256_token(body, claims(ctx), secret=rsa.pem),
        "wrong issuer": lambda: compact(rsa, body, claims(ctx, iss="CERNER^MAIN")),
        "wrong audience": lambda: compact(rsa, body, claims(ctx, aud="https://other/hl7/siu")),
        "no jti": lambda: compact(rsa, body, claims(ctx, jti=None)),
        "tampered payload": lambda: _tamper(compact(rsa, body, claims(ctx))),
        "unsigned": lambda: "",
        "not a jws": lambda: "abc.def",
    }[case]()
    if case == "unsigned":
        response = await client.post(
            _url(endpoint), content=body, headers={"Content-Type": "application/hl7-v2"}
        )
    else:
        response = await _post_jose(client, endpoint, token)

    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "hl7_signature_refused"
    assert message in error["message"]
    assert await appointments(ctx) == []


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    changed = base64.urlsafe_b64decode(payload + "==").replace(b"20300312", b"20300313")
    return ".".join([header, base64.urlsafe_b64encode(changed).rstrip(b"=").decode(), signature])


async def test_it_refuses_a_changed_body_under_a_bearer_signature(
    ctx: AppContext, client: httpx.AsyncClient, rsa: Issued
) -> None:
    endpoint = await _setup(ctx, rsa)
    body = siu()
    token = compact(
        rsa,
        json.dumps(claims(ctx, body_sha256=hashlib.sha256(body).hexdigest())).encode(),
        {"typ": "JWT"},
    )

    response = await client.post(
        _url(endpoint),
        content=body.replace(b"20300312", b"20300313"),
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 401
    assert "body_sha256 does not match" in response.json()["error"]["message"]


async def test_it_refuses_a_replayed_jti(
    ctx: AppContext, client: httpx.AsyncClient, rsa: Issued
) -> None:
    endpoint = await _setup(ctx, rsa)
    token = compact(rsa, siu(), claims(ctx, jti="once-only"))

    first = await _post_jose(client, endpoint, token)
    replay = await _post_jose(client, endpoint, token)
    # A new signature for the same message is fine: answered from the stored ACK.
    fresh = await _post_jose(client, endpoint, compact(rsa, siu(), claims(ctx)))

    assert first.status_code == 200
    assert replay.status_code == 401 and "already used" in replay.json()["error"]["message"]
    assert fresh.status_code == 200 and fresh.content == first.content


async def test_it_lets_the_same_signature_retry_after_a_temporary_failure(
    ctx: AppContext, client: httpx.AsyncClient, rsa: Issued
) -> None:
    endpoint = await _setup(ctx, rsa)
    assert (
        await _post_jose(
            client, endpoint, compact(rsa, siu(control_id="W", filler="W"), claims(ctx))
        )
    ).status_code == 200
    token = compact(rsa, siu(control_id="RETRY"), claims(ctx))
    async with ctx.db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE contact RENAME TO contact_gone"))
    try:
        failed = await _post_jose(client, endpoint, token)
    finally:
        async with ctx.db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE contact_gone RENAME TO contact"))
    retried = await _post_jose(client, endpoint, token)

    assert failed.status_code == 503 and failed.headers["retry-after"] == "30"
    assert read_ack(failed.content).code == "AE"
    assert retried.status_code == 200 and read_ack(retried.content).code == "AA"


async def test_it_answers_with_hl7_acks_for_hl7_problems(
    ctx: AppContext, client: httpx.AsyncClient, rsa: Issued
) -> None:
    endpoint = await _setup(ctx, rsa)
    stranger = await _post_jose(
        client, endpoint, compact(rsa, siu(sender="OTHER^APP"), claims(ctx))
    )
    broken = await _post_jose(
        client, endpoint, compact(rsa, siu().replace(b"SCH|", b"XYZ|"), claims(ctx))
    )

    assert stranger.status_code == 200 and read_ack(stranger.content).code == "AR"
    assert broken.status_code == 200 and read_ack(broken.content).code == "AE"


async def test_it_names_the_endpoint_problem(
    ctx: AppContext, client: httpx.AsyncClient, rsa: Issued
) -> None:
    await _setup(ctx)  # no certificate uploaded
    endpoint = await _setup_second(ctx)
    token = compact(rsa, siu(), claims(ctx))

    missing = await client.post(
        "/hl7/siu", content=token, headers={"Content-Type": "application/jose"}
    )
    unknown = await client.post(
        f"/hl7/siu?endpoint={uuid.uuid4()}",
        content=token,
        headers={"Content-Type": "application/jose"},
    )
    uncertified = await _post_jose(client, endpoint, token)

    assert missing.status_code == 422 and "Name the OpenVisit endpoint" in missing.text
    assert unknown.status_code == 404
    assert uncertified.status_code == 401
    assert "No valid certificate is uploaded for the production" in uncertified.text


async def _setup_second(ctx: AppContext) -> EhrEndpoint:
    return await make_endpoint(
        ctx,
        senders=("EPIC^OTHER",),
        slug="second-org",
        fhir_base="https://prod.example.org/fhir",
        environment="production",
    )


async def test_it_takes_the_configured_issuer_instead_of_the_sender_names(
    ctx: AppContext, client: httpx.AsyncClient, rsa: Issued
) -> None:
    endpoint = await _setup(ctx, rsa)
    await set_hl7_senders(
        ctx, endpoint_id=str(endpoint.id), senders=[SENDER], jws_issuer="bridges-test"
    )

    by_name = await _post_jose(client, endpoint, compact(rsa, siu(), claims(ctx)))
    by_issuer = await _post_jose(
        client, endpoint, compact(rsa, siu(), claims(ctx, iss="bridges-test"))
    )

    assert by_name.status_code == 401 and "expected bridges-test" in by_name.text
    assert by_issuer.status_code == 200 and read_ack(by_issuer.content).code == "AA"
