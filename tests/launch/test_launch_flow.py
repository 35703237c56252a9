"""EHR launches end to end over real HTTP: sandbox EHR + OpenVisit + npm oidc-provider.

No browser here (tests/e2e has the Chromium walk-through): httpx plays the browser, following
every redirect and submitting the sandbox's pick-a-user form and the IdP's login form.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from openvisit.db import Database
from openvisit.models import AuditLog, Participant, ProviderLink, Visit
from openvisit.models.base import Base
from tests.launch.stack import Stack, pick_user, start_stack
from tests.peers.fixtures import free_port
from tests.support.backend import subprocess_env


@pytest.fixture
def stack(db_url: str, tmp_path: Path, start_oidc_idp) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    port = free_port()
    idp = start_oidc_idp(
        [f"http://127.0.0.1:{port}/launch/idp/callback"],
        client_id=f"openvisit-{port}",
        client_secret="idp-secret-" + "x" * 20,
    )
    env = subprocess_env(
        db_url,
        OPENVISIT_OIDC_ISSUER=idp.issuer,
        OPENVISIT_OIDC_CLIENT_ID=idp.client_id,
        OPENVISIT_OIDC_CLIENT_SECRET=idp.client_secret or "",
    )
    running = start_stack(env, tmp_path, ov_port=port)
    running.idp = idp  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.stop()


def _ehr_button(
    http: httpx.Client, stack: Stack, *, path: str, data: dict[str, str]
) -> httpx.Response:
    """Press the sandbox's "Start virtual visit" / "Begin visit" button: EHR → OpenVisit."""
    pressed = http.post(f"{stack.sandbox}{path}", data=data)
    assert pressed.status_code == 303
    launch_url = pressed.headers["location"]
    assert launch_url.startswith(stack.openvisit) and "iss=" in launch_url
    return http.get(launch_url)


def _through_ehr_sign_in(
    http: httpx.Client, response: httpx.Response, user: str | None = None
) -> httpx.Response:
    """OpenVisit → EHR authorize → pick user → back at OpenVisit's callback."""
    assert response.status_code == 303, response.text[:300]
    page = http.get(response.headers["location"])
    decided = pick_user(http, page, user=user)
    assert decided.status_code == 303
    callback = decided.headers["location"]
    assert "/launch/callback?" in callback
    return http.get(callback)


def _patient_identity(html: str) -> tuple[str, str]:
    name = re.search(r'<p class="patient-name">([^<]*)</p>', html)
    born = re.search(r'<p class="patient-birth">([^<]*)</p>', html)
    assert name and born, "the clinician's page shows no patient identity"
    return unescape(name.group(1)), unescape(born.group(1))


async def _rows_mentioning(db_url: str, text: str) -> list[str]:
    """Every table's rows, as text, that contain ``text`` (names: table.column)."""
    db = Database(db_url)
    found: list[str] = []
    try:
        async with db.transaction() as session:
            for table in Base.metadata.sorted_tables:
                for row in (await session.execute(select(table))).all():
                    for column, value in zip(table.columns, row, strict=True):
                        if value is not None and text.lower() in str(value).lower():
                            found.append(f"{table.name}.{column.name}")
    finally:
        await db.dispose()
    return found


async def _count(db_url: str, model: type, **where: object) -> int:
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            query = select(func.count()).select_from(model)
            for key, value in where.items():
                query = query.where(getattr(model, key) == value)
            return int(await session.scalar(query) or 0)
    finally:
        await db.dispose()


def test_it_signs_in_a_provider_once_then_goes_straight_to_the_visit_and_the_patient_joins_it(
    stack: Stack,
    db_url: str,
) -> None:
    with httpx.Client(timeout=20) as http:
        # First launch: EHR sign-in, then the one-time IdP sign-in, then the visit.
        after_ehr = _through_ehr_sign_in(
            http,
            _ehr_button(
                http,
                stack,
                path="/ehr/launch",
                data={"practitioner": "prac-1", "appointment": "appt-21"},
            ),
        )
        assert after_ehr.status_code == 303
        idp_start = after_ehr.headers["location"]
        assert idp_start.startswith(f"{stack.openvisit}/launch/idp?pending=")
        to_idp = http.get(idp_start)
        assert to_idp.headers["location"].startswith(stack.idp.issuer)  # type: ignore[attr-defined]
        back = stack.idp.dev_login(to_idp.headers["location"], "dr.sample")  # type: ignore[attr-defined]
        assert back.startswith(f"{stack.openvisit}/launch/idp/callback?")
        linked = http.get(back)
        assert linked.status_code == 303
        provider_url = linked.headers["location"]
        assert provider_url.startswith(f"{stack.openvisit}/v/")
        provider_page = http.get(provider_url)
        assert provider_page.status_code == 200
        # Who is waiting: read live from the EHR with the clinician's token, shown here only.
        name, born = _patient_identity(provider_page.text)
        assert len(name.split()) >= 2 and re.fullmatch(r"Born \w+ \d{1,2}, \d{4}", born), (
            name, born)

        # Second launch of the same clinician: no IdP any more, the same visit.
        again = _through_ehr_sign_in(
            http,
            _ehr_button(
                http,
                stack,
                path="/ehr/launch",
                data={"practitioner": "prac-1", "appointment": "appt-21"},
            ),
        )
        assert again.status_code == 303
        assert again.headers["location"].startswith(f"{stack.openvisit}/v/")

        # The patient, from the portal: lands on the patient's page of the same visit.
        patient = _through_ehr_sign_in(
            http,
            _ehr_button(
                http,
                stack,
                path="/portal/launch",
                data={"patient": "pat-1", "appointment": "appt-21"},
            ),
        )
        assert patient.status_code == 303
        patient_page = http.get(patient.headers["location"])
        assert patient_page.status_code == 200
        assert name not in patient_page.text and "data-patient-identity" not in patient_page.text

    # Never stored: not in any row of any table, not in the server's log.
    assert asyncio.run(_rows_mentioning(db_url, name)) == []
    assert name not in stack.procs[0].log.read_text(errors="replace")  # the web process

    assert asyncio.run(_count(db_url, Visit)) == 1
    assert asyncio.run(_count(db_url, ProviderLink, ehr_user_id="Practitioner/prac-1")) == 1
    assert asyncio.run(_count(db_url, Participant, role="provider")) == 1
    assert asyncio.run(_count(db_url, Participant, role="patient")) == 1
    assert asyncio.run(_count(db_url, AuditLog, action="launch.provider")) == 2


def test_it_refuses_a_replayed_callback_and_names_the_environment(stack: Stack) -> None:
    with httpx.Client(timeout=20) as http:
        launched = _ehr_button(
            http, stack, path="/portal/launch", data={"patient": "pat-1", "appointment": "appt-21"}
        )
        page = http.get(launched.headers["location"])
        callback = pick_user(http, page).headers["location"]
        assert http.get(callback).status_code == 303
        replay = http.get(callback, headers={"Accept": "text/html"})
        assert replay.status_code == 410
        assert "already used" in replay.text

        mismatch = http.get(
            f"{stack.openvisit}/launch/callback?code=x&state=forged",
            headers={"Accept": "text/html"},
        )
        assert mismatch.status_code == 422 and "state mismatch" in mismatch.text

        unknown = http.get(
            f"{stack.openvisit}/launch?iss=https://prod-ehr.example.org/fhir&launch=abc",
            headers={"Accept": "text/html"},
        )
        assert unknown.status_code == 403
        assert "not configured" in unknown.text
        assert "test and production records swapped" in unknown.text


def test_it_shows_the_ehr_token_error_with_its_code(stack: Stack) -> None:
    with httpx.Client(timeout=20) as http:
        launched = _ehr_button(
            http, stack, path="/portal/launch", data={"patient": "pat-1", "appointment": "appt-21"}
        )
        page = http.get(launched.headers["location"])
        callback = pick_user(http, page).headers["location"]
        # Tamper with the code: the EHR refuses it at the token endpoint.
        tampered = callback.replace("code=", "code=x")
        refused = http.get(tampered, headers={"Accept": "text/html"})
        assert refused.status_code in (400, 403, 502)
        assert "invalid_grant" in refused.text
        assert "test" in refused.text  # the environment is named
