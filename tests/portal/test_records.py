"""Certificates per environment, the integration records and their context tokens."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from openvisit.context import AppContext
from openvisit.errors import Gone, NotFound
from openvisit.portal.records.service import sign_context_token, verify_context_token
from tests.portal.certs import der_of, make_certificate
from tests.portal.conftest import FHIR, Browser, endpoint_body

BrowserFactory = Callable[[str], Awaitable[Browser]]


async def _upload(
    admin: Browser, data: bytes, *, environment: str = "test", filename: str = "sender.cer"
) -> Any:
    return await admin.http.post(
        "/portal/certificates",
        data={"csrf_token": admin.csrf, "environment": environment},
        files={"file": (filename, data, "application/pkix-cert")},
    )


@pytest.mark.parametrize("form", ["pem", "base64", "der"])
async def test_it_accepts_a_certificate_as_pem_base64_or_der(
    browser: BrowserFactory,
    form: str,
) -> None:
    admin = await browser("admin")
    pem, _ = make_certificate(common_name="Epic Interconnect Prod")
    der = der_of(pem)
    data = {"pem": pem, "base64": base64.b64encode(der), "der": der}[form]
    response = await _upload(admin, data, environment="production")
    assert response.status_code == 303, response.text[:400]
    page = await admin.get("/portal/certificates")
    assert "CN=Epic Interconnect Prod" in page.text
    import hashlib

    thumb = hashlib.sha256(der).hexdigest().upper()
    assert ":".join(thumb[i : i + 2] for i in range(0, 64, 2)) in page.text
    listed = (await admin.api("GET", "/api/portal/certificates")).json()
    assert listed[0]["environment"] == "production" and listed[0]["status"] == "valid"


def _ec_p256_certificate() -> bytes:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p256")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=9))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: make_certificate()[1], "mistake.cer: This file contains a PRIVATE key"),
        (
            lambda: make_certificate(days_valid=5, starts_in_days=-10)[0],
            "This certificate expired on",
        ),
        (lambda: make_certificate(starts_in_days=3)[0], "This certificate is not valid until"),
        (lambda: b"hello, I am not a certificate", "This is not a certificate"),
        (lambda: b"", "The file is empty"),
        (_ec_p256_certificate, "only P-384"),
    ],
)
async def test_it_refuses_what_is_not_a_usable_public_certificate(
    browser: BrowserFactory,
    make: Callable[[], bytes],
    message: str,
) -> None:
    admin = await browser("admin")
    response = await _upload(admin, make(), filename="mistake.cer")
    assert response.status_code == 422
    assert message in response.text, response.text[-1500:]
    assert (await admin.api("GET", "/api/portal/certificates")).json() == []


async def test_it_uploads_and_retires_certificates_through_the_api(
    browser: BrowserFactory,
) -> None:
    admin = await browser("admin")
    pem, key = make_certificate()
    made = await admin.api(
        "POST",
        "/api/portal/certificates",
        json={"environment": "test", "certificate": pem.decode()},
    )
    assert made.status_code == 201 and made.json()["subject"].endswith("CN=Epic Interconnect Test")
    refused = await admin.api(
        "POST",
        "/api/portal/certificates",
        json={"environment": "test", "certificate": key.decode()},
    )
    assert refused.status_code == 422 and "PRIVATE key" in refused.json()["error"]["message"]
    wrong_env = await admin.api(
        "POST",
        "/api/portal/certificates",
        json={"environment": "staging", "certificate": pem.decode()},
    )
    assert wrong_env.status_code == 422
    retired = await admin.api("DELETE", f"/api/portal/certificates/{made.json()['id']}")
    assert retired.status_code == 204
    assert (await admin.api("GET", "/api/portal/certificates")).json()[0]["status"] == "retired"


@pytest.mark.parametrize("persona", ["approver", "reporter", "outsider"])
async def test_it_lets_only_the_org_admin_upload_certificates(
    browser: BrowserFactory,
    persona: str,
) -> None:
    admin, user = await browser("admin"), await browser(persona)
    pem, _ = make_certificate()
    made = await admin.api(
        "POST",
        "/api/portal/certificates",
        json={"environment": "test", "certificate": pem.decode()},
    )
    refused = await _upload(user, pem)
    assert refused.status_code == (403 if persona != "outsider" else 303)
    retire = await user.api("DELETE", f"/api/portal/certificates/{made.json()['id']}")
    assert retire.status_code == (403 if persona != "outsider" else 404)


async def _approved_endpoint(admin: Browser, ctx: AppContext, **overrides: Any) -> dict[str, Any]:
    created = await admin.api("POST", "/api/portal/endpoints", json=endpoint_body(**overrides))
    assert created.status_code == 201, created.text
    from openvisit.ehr_endpoints import service
    from openvisit.models import EhrEndpoint

    async with ctx.transaction() as session:
        endpoint = await session.get(EhrEndpoint, uuid.UUID(created.json()["id"]))
        assert endpoint is not None
        await service.approve(
            session, endpoint=endpoint, actor="test", approver_ehr_user="Practitioner/prac-1"
        )
    body: dict[str, Any] = created.json()
    return body


async def test_it_generates_the_five_records_naming_the_environment(
    browser: BrowserFactory,
    ctx: AppContext,
) -> None:
    admin = await browser("admin")
    endpoint = await _approved_endpoint(admin, ctx)
    page = await admin.get(f"/portal/endpoints/{endpoint['id']}/records")
    assert page.status_code == 200
    assert "TEST records: paste them only into the test EHR environment" in page.text
    download = await admin.get(f"/portal/endpoints/{endpoint['id']}/records.json")
    assert download.headers["content-disposition"].startswith(
        'attachment; filename="openvisit-test-records-'
    )
    records = json.loads(download.text)
    assert [r["record"] for r in records["records"]] == [
        "provider_launch",
        "patient_launch",
        "direct_sms",
        "sms_configuration",
        "device_test",
    ]
    by_kind = {r["record"]: r for r in records["records"]}
    pub = ctx.settings.public_url
    assert by_kind["provider_launch"]["fields"]["launch_url"] == f"{pub}/launch"
    assert by_kind["provider_launch"]["fields"]["fhir_base"] == FHIR
    assert by_kind["patient_launch"]["fields"]["launch_url"] == f"{pub}/launch/patient"
    assert by_kind["direct_sms"]["fields"]["link_template"] == f"{pub}/v/<join token>"
    assert by_kind["sms_configuration"]["fields"]["sms_enabled"] == "off"
    device_url = by_kind["device_test"]["fields"]["device_test_url"]
    assert device_url.startswith(f"{pub}/devicetest?ctx=")
    assert (
        by_kind["patient_launch"]["fields"]["device_test_context_token"]
        == device_url.split("ctx=")[1]
    )
    assert all(r["environment"] == "test" and r["approved"] for r in records["records"])
    one = await admin.get(f"/portal/endpoints/{endpoint['id']}/records/device_test.json")
    assert 'filename="openvisit-test-device-test.json"' in one.headers["content-disposition"]
    missing = await admin.get(f"/portal/endpoints/{endpoint['id']}/records/nope.json")
    assert missing.status_code == 404 and "choose one of provider_launch" in missing.text
    api = (await admin.api("GET", f"/api/portal/endpoints/{endpoint['id']}/records")).json()
    assert api == records


async def test_it_shows_epic_context_tokens_in_epic_records(
    browser: BrowserFactory,
    ctx: AppContext,
) -> None:
    admin = await browser("admin")
    created = await admin.api(
        "POST",
        "/api/portal/endpoints",
        json=endpoint_body(
            vendor="epic", fhir_base="https://epic.example.org/api/FHIR/R4", save_failed_check=True
        ),
    )
    records = await admin.api("GET", f"/api/portal/endpoints/{created.json()['id']}/records")
    provider = records.json()["records"][0]["fields"]
    assert "SessionID=%CSN%" in provider["context_link"]
    assert "ConferenceID=%CONFERENCEID%" in provider["context_link_group"]
    assert records.json()["records"][0]["approved"] is False


async def test_it_signs_and_revokes_device_test_context_tokens(
    browser: BrowserFactory,
    ctx: AppContext,
) -> None:
    admin = await browser("admin")
    endpoint = await _approved_endpoint(admin, ctx)
    first = (await admin.api("GET", f"/api/portal/endpoints/{endpoint['id']}/records")).json()
    token = first["records"][4]["fields"]["context_token"]
    again = (await admin.api("GET", f"/api/portal/endpoints/{endpoint['id']}/records")).json()
    assert again["records"][4]["fields"]["context_token"] == token  # stable until replaced
    async with ctx.transaction() as session:
        row = await verify_context_token(session, app=ctx, value=token)
        assert str(row.endpoint_id) == endpoint["id"]
        for forged in (token[:-2] + "xx", "garbage", uuid.uuid4().hex + ".abc"):
            with pytest.raises(NotFound, match="device-test link is not valid"):
                await verify_context_token(session, app=ctx, value=forged)
    replaced = await admin.post(f"/portal/endpoints/{endpoint['id']}/context-token")
    assert replaced.headers["location"].endswith("notice=token_replaced")
    new = (await admin.api("GET", f"/api/portal/endpoints/{endpoint['id']}/records")).json()
    fresh = new["records"][4]["fields"]["context_token"]
    assert fresh != token
    async with ctx.transaction() as session:
        with pytest.raises(Gone, match="withdrawn by the clinic"):
            await verify_context_token(session, app=ctx, value=token)
        assert (await verify_context_token(session, app=ctx, value=fresh)).revoked_at is None
        assert sign_context_token(ctx, row) == token
    audit = (await admin.api("GET", "/api/portal/audit?action=context_token.*")).json()["entries"]
    assert [e["action"] for e in audit] == [
        "context_token.create",
        "context_token.revoke",
        "context_token.create",
    ]


async def test_it_lets_approvers_read_records_but_not_reporters_or_outsiders(
    browser: BrowserFactory,
    ctx: AppContext,
) -> None:
    admin = await browser("admin")
    endpoint = await _approved_endpoint(admin, ctx)
    approver = await browser("approver")
    assert (await approver.get(f"/portal/endpoints/{endpoint['id']}/records")).status_code == 200
    replace = await approver.post(f"/portal/endpoints/{endpoint['id']}/context-token")
    assert replace.status_code == 403
    reporter = await browser("reporter")
    refused = await reporter.get(f"/portal/endpoints/{endpoint['id']}/records.json")
    assert refused.status_code == 403 and "read the integration records" in refused.text
    outsider = await browser("outsider")
    assert (await outsider.get(f"/portal/endpoints/{endpoint['id']}/records")).status_code == 404
