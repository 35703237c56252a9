"""The outside security review's attack families, replayed against a real ``openvisit serve``
in production mode (issue 10), on both backends.

Each test is one family. The stack is shared by the module so the last test can read the whole
log: zero 5xx answers seen by any family, zero unhandled exceptions, and no token, phone
number or e-mail address anywhere in the log.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from openvisit.crypto import FieldCipher
from openvisit.db import Database
from openvisit.models import Appointment, Contact, utcnow
from tests.security.server import Stack, production_stack

pytestmark = [pytest.mark.backend, pytest.mark.slow, pytest.mark.timeout(600)]

PHONE = "+420601123456"
EMAIL = "alex.sample@example.org"


class Seen:
    """Every status the attacks received (the 5xx count must stay zero)."""

    def __init__(self) -> None:
        self.server_errors: list[str] = []

    def hook(self, response: httpx.Response) -> None:
        if response.status_code >= 500:
            self.server_errors.append(f"{response.request.method} {response.status_code}")


@pytest.fixture(scope="module")
def seen() -> Seen:
    return Seen()


@pytest.fixture(scope="module")
def stack(_template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with production_stack(_template_db, tmp_path_factory.mktemp("attacks")) as running:
        asyncio.run(_seed_contacts(running))
        yield running


async def _seed_contacts(stack: Stack) -> None:
    """A booked appointment with a phone number and an e-mail, as the SIU feed stores them."""
    from tests.support.backend import TEST_KEYS

    cipher = FieldCipher(TEST_KEYS)
    db = Database(stack.db_url)
    try:
        async with db.transaction() as session:
            appointment = Appointment(
                organisation_id=stack.organisation_id,
                endpoint_id=stack.endpoint_id,
                ehr_appointment_id="attack-appt-1",
                patient_ref="Patient/attack-1",
                start_at=utcnow() + timedelta(minutes=10),
                source="hl7",
            )
            session.add(appointment)
            await session.flush()
            for kind, value in (("sms", PHONE), ("email", EMAIL)):
                session.add(
                    Contact(
                        appointment_id=appointment.id,
                        kind=kind,
                        value_enc=cipher.encrypt(value),
                        purge_at=utcnow() + timedelta(days=1),
                    )
                )
    finally:
        await db.dispose()


@pytest.fixture
def http(stack: Stack, seen: Seen) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack.base, timeout=30, event_hooks={"response": [seen.hook]}
    ) as client:
        yield client


def test_it_refuses_forged_and_malformed_links_without_error(
    http: httpx.Client, stack: Stack
) -> None:
    forged = [
        "AAAAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
        "x" * 4000,
        "%00%ff%fe",
        "..%2f..%2fetc%2fpasswd",
        "AAAAAAAAAAAAAAAAAAAAAA==.BBBB",
    ]
    stack.secrets.extend(forged[:1])
    for token in forged:
        answer = http.get(f"/v/{token}")
        assert answer.status_code in (404, 410, 422), (token[:40], answer.status_code)
    for ctx in ("", "nope", "A" * 300, "%ff"):
        assert http.get("/devicetest", params={"ctx": ctx}).status_code in (404, 410, 422)
    for query in ({"state": "forged", "code": "x"}, {"error": "access_denied"}, {}):
        assert http.get("/launch/callback", params=query).status_code in (400, 404, 410, 422)


def test_it_answers_junk_bodies_with_a_reason(http: httpx.Client, stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {stack.admin_token}"}
    for body in (b"{", b"\xff\xfe", b"[]" * 10_000, b'{"a":' * 2000 + b"1" + b"}" * 2000):
        answer = http.post(
            "/api/portal/staff",
            content=body,
            headers={**auth, "content-type": "application/json"},
        )
        assert answer.status_code in (400, 422), answer.text[:200]
        assert answer.json()["error"]["message"].endswith(".")
    nan = http.patch(
        "/api/portal/organisation",
        content=b'{"allocation_limit": NaN}',
        headers={**auth, "content-type": "application/json"},
    )
    assert nan.status_code == 422


def test_it_exposes_nothing_internal_in_production(http: httpx.Client) -> None:
    for path in ("/api/openapi.json", "/api/docs", "/metrics"):
        assert http.get(path).status_code == 404, path
    home = http.get("/")
    assert "Version" not in home.text
    page = http.get("/portal/signin")
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "form-action 'self'" in policy
    assert "cdn" not in page.text.lower()


def test_it_logged_no_error_no_token_and_no_contact(stack: Stack, seen: Seen) -> None:
    assert seen.server_errors == []
    text = stack.log_text()
    assert "unhandled_error" not in text and "Traceback" not in text, text[-4000:]
    for secret in [*stack.secrets, PHONE, PHONE[1:], "601123456", EMAIL]:
        assert secret not in text, secret[:12]
    # Nothing shaped like a join token or an e-mail address either.
    assert not re.search(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{32}", text)
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.-]+", text)
