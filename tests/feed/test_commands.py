"""The feed set-up functions the CLI wraps: senders, status map, certificate upload."""

from __future__ import annotations

from pathlib import Path

import pytest

from openvisit.certificates import PRIVATE_KEY_MESSAGE, active_certificates
from openvisit.context import AppContext
from openvisit.errors import Conflict, InvalidInput, NotFound
from openvisit.feed.commands import set_hl7_senders, set_status_map, upload_certificate
from openvisit.feed.service import hl7_options

from .certs import issue
from .support import make_endpoint


async def test_it_replaces_the_senders_and_refuses_one_listed_elsewhere(ctx: AppContext) -> None:
    first = await make_endpoint(ctx, senders=("EPIC^EPICADT",))
    second = await make_endpoint(
        ctx, senders=(), slug="org-two", fhir_base="https://two.example.org/fhir"
    )

    saved = await set_hl7_senders(
        ctx, endpoint_id=str(second.id), senders=[" RHAPSODY ^ MAIN ", "MIRTH", "MIRTH"]
    )
    with pytest.raises(Conflict, match=f"already listed by endpoint {first.id}"):
        await set_hl7_senders(ctx, endpoint_id=str(second.id), senders=["epic^epicadt"])
    with pytest.raises(InvalidInput, match="APP\\^FACILITY"):
        await set_hl7_senders(ctx, endpoint_id=str(second.id), senders=["^FAC"])

    await set_hl7_senders(ctx, endpoint_id=str(second.id), senders=["MIRTH"], jws_issuer="mirth-1")

    assert saved == ["RHAPSODY^MAIN", "MIRTH"]
    async with ctx.transaction() as session:
        row = await session.get(type(second), second.id)
        assert row is not None
        assert hl7_options(row)["senders"] == ["MIRTH"]
        assert hl7_options(row)["jws_issuer"] == "mirth-1"
        assert row.version == second.version + 2


async def test_it_checks_status_map_values(ctx: AppContext) -> None:
    endpoint = await make_endpoint(ctx, senders=("EPIC",))

    saved = await set_status_map(
        ctx, endpoint_id=str(endpoint.id), mapping={"SCHED": "booked", "ARR": "arrived"}
    )
    with pytest.raises(InvalidInput, match=r"'done' .* is not an Appointment status"):
        await set_status_map(ctx, endpoint_id=str(endpoint.id), mapping={"FIN": "done"})

    assert saved == {"SCHED": "booked", "ARR": "arrived"}


async def test_it_uploads_a_certificate_for_the_endpoints_environment(
    ctx: AppContext, tmp_path: Path
) -> None:
    endpoint = await make_endpoint(ctx, senders=("EPIC",), environment="production")
    cert = issue(kind="ec")
    (tmp_path / "bridges.cer").write_bytes(cert.der)
    (tmp_path / "bridges.key").write_bytes(cert.key_pem)

    parsed = await upload_certificate(
        ctx, endpoint_id=str(endpoint.id), path=tmp_path / "bridges.cer"
    )
    with pytest.raises(InvalidInput) as refused:
        await upload_certificate(ctx, endpoint_id=str(endpoint.id), path=tmp_path / "bridges.key")
    with pytest.raises(InvalidInput, match="cannot be read"):
        await upload_certificate(ctx, endpoint_id=str(endpoint.id), path=tmp_path / "none.cer")

    assert refused.value.message == PRIVATE_KEY_MESSAGE
    assert parsed.public_key_type == "EC P-384"
    async with ctx.transaction() as session:
        stored = await active_certificates(
            session, organisation_id=endpoint.organisation_id, environment="production"
        )
    assert [c.thumbprint_sha256 for c in stored] == [parsed.thumbprint_sha256]


async def test_it_names_a_bad_or_unknown_endpoint(ctx: AppContext) -> None:
    with pytest.raises(InvalidInput, match="is not an endpoint id"):
        await set_hl7_senders(ctx, endpoint_id="epic-prod", senders=["EPIC"])
    with pytest.raises(NotFound):
        await set_hl7_senders(
            ctx, endpoint_id="00000000-0000-0000-0000-000000000000", senders=["EPIC"]
        )
