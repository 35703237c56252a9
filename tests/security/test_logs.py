"""What reaches the log: route templates, never tokens, phone numbers, e-mail or SQL values
(issue 10 item 4; issue 11 item 18)."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest
from sqlalchemy.exc import IntegrityError

from openvisit.app import create_app
from openvisit.context import AppContext
from openvisit.logs import configure_logging, get_logger, scrub
from openvisit.models import Organisation
from tests.visits.support import Links, make_visit, seed_org

TOKEN = "AAAAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"


async def test_it_logs_the_route_template_not_the_token_of_a_refused_link(
    ctx: AppContext, capsys: pytest.CaptureFixture[str]
) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    real = Links.token(links.patient)
    forged = real.split(".")[0] + "." + "C" * 32
    app = create_app(ctx=ctx)
    configure_logging(level="INFO")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        assert (await http.get(f"/v/{forged}")).status_code == 404
        assert (await http.get(f"/v/{TOKEN}")).status_code == 404
    err = capsys.readouterr().err
    assert "request_error" in err and "/v/{token}" in err
    for secret in (forged, TOKEN, real.split(".")[0]):
        assert secret not in err


def test_it_masks_tokens_and_phone_numbers_but_keeps_ids_and_addresses() -> None:
    ident = str(uuid.uuid4())
    text = scrub(f"visit {ident} from 10.1.2.3:5432 and 127.0.0.1 link /v/{TOKEN} +1 202 555 0143")
    assert ident in text and "10.1.2.3:5432" in text and "127.0.0.1" in text
    assert TOKEN not in text and "[token]" in text
    assert "202 555" not in text and "[phone]" in text


def test_it_scrubs_exception_messages(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO")
    log = get_logger("test")
    try:
        raise ValueError(f"patient +420 601 123 456 alex@example.org {TOKEN}")
    except ValueError:
        log.exception("boom", visit_id="v-1")
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    err = capsys.readouterr().err
    assert "Traceback" in err and "v-1" in err
    for secret in ("601 123", "alex@example.org", TOKEN):
        assert secret not in err


async def test_it_keeps_sql_parameters_out_of_database_errors(ctx: AppContext) -> None:
    async with ctx.transaction() as session:
        session.add(Organisation(slug="dup", display_name="First"))
    with pytest.raises(IntegrityError) as caught:
        async with ctx.transaction() as session:
            session.add(Organisation(slug="dup", display_name="Alex Sample +12025550143"))
    assert "Alex Sample" not in str(caught.value)
    assert "12025550143" not in str(caught.value)


def test_it_keeps_encrypted_keys_out_of_audit_snapshots() -> None:
    from openvisit.audit import snapshot
    from openvisit.models import EhrEndpoint

    endpoint = EhrEndpoint(
        name="Epic",
        vendor="epic",
        environment="test",
        fhir_base="https://ehr.example/fhir",
        client_id="c",
        options={"epic_link": {"provider": {"key_enc": "gAAAA-secret", "mode": "gcm"}}},
    )
    taken = snapshot(endpoint)
    assert taken["options"] == {"epic_link": {"provider": {"key_enc": "[hidden]", "mode": "gcm"}}}
    assert "gAAAA-secret" not in repr(taken)
