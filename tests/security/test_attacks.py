"""The outside security review's attack families, replayed against a real ``openvisit serve``
in production mode (issue 10), on both backends.

Each test is one family. The stack is shared by the module so the last test can read the whole
log: zero 5xx answers seen by any family, zero unhandled exceptions, and no token, phone
number or e-mail address anywhere in the log.
"""

from __future__ import annotations

import asyncio
import re
import uuid
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
CANDIDATE = {"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdpMid": "0",
             "sdpMLineIndex": 0}


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
    from openvisit.privacy.refs import PatientRefs
    from tests.support.backend import TEST_KEYS

    cipher = FieldCipher(TEST_KEYS)
    db = Database(stack.db_url)
    try:
        async with db.transaction() as session:
            appointment = Appointment(
                organisation_id=stack.organisation_id,
                endpoint_id=stack.endpoint_id,
                ehr_appointment_id="attack-appt-1",
                **PatientRefs(cipher).columns("Patient/attack-1"),
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


def test_it_keeps_the_outbox_behind_sign_in(http: httpx.Client, stack: Stack) -> None:
    page = http.get("/ops/outbox", follow_redirects=False)
    assert page.status_code in (303, 401), page.status_code
    assert PHONE not in page.text and "/v/" not in page.text
    as_json = http.get("/ops/outbox", headers={"Accept": "application/json"})
    assert as_json.status_code == 401


async def _second_admin(stack: Stack) -> tuple[uuid.UUID, str]:
    from argon2 import PasswordHasher

    from openvisit.models import StaffAccount
    from openvisit.portal.signin.sessions import Principal, create_api_token

    db = Database(stack.db_url)
    try:
        async with db.transaction() as session:
            account = StaffAccount(
                organisation_id=stack.organisation_id,
                username="leaver",
                password_hash=PasswordHasher().hash("another long password 42"),
                roles=["org_admin"],
            )
            session.add(account)
            await session.flush()
            principal = Principal(
                organisation_id=stack.organisation_id,
                roles=frozenset({"org_admin"}),
                via="session",
                actor=f"staff:{account.id}",
                display="leaver",
                account_id=account.id,
            )
            _, secret = await create_api_token(
                session, principal=principal, name="leaver's script", roles=["org_admin"]
            )
            return account.id, secret
    finally:
        await db.dispose()


def test_it_stops_a_token_whose_creator_left(http: httpx.Client, stack: Stack) -> None:
    account_id, token = asyncio.run(_second_admin(stack))
    stack.secrets.append(token)
    theirs = {"Authorization": f"Bearer {token}"}
    assert http.get("/api/portal/me", headers=theirs).status_code == 200
    ours = {"Authorization": f"Bearer {stack.admin_token}"}
    left = http.patch(f"/api/portal/staff/{account_id}", json={"active": False}, headers=ours)
    assert left.status_code == 200, left.text
    assert http.get("/api/portal/me", headers=theirs).status_code == 401
    made = http.post(
        "/api/portal/staff",
        json={"kind": "local", "username": "backdoor", "password": "x" * 20,
              "roles": ["org_admin"]},
        headers=theirs,
    )
    assert made.status_code == 401


def test_it_throttles_a_burst_of_bad_sign_ins(stack: Stack, seen: Seen) -> None:
    async def burst() -> list[int]:
        async def one(n: int) -> int:
            # Each guess from its own "browser" (cookie jar), all from one address.
            async with httpx.AsyncClient(
                base_url=stack.base, timeout=60, event_hooks={"response": [_async(seen)]}
            ) as client:
                page = await client.get("/portal/signin")
                found = re.search(r'name="signin_token" value="([^"]+)"', page.text)
                assert found, page.text[:200]
                answer = await client.post(
                    "/portal/signin",
                    data={"username": "ADMIN ", "password": f"guess-{n}",
                          "signin_token": found.group(1), "next": "/portal"},
                )
                return answer.status_code

        return list(await asyncio.gather(*(one(n) for n in range(25))))

    codes = asyncio.run(burst())
    assert all(code < 500 for code in codes), codes
    assert codes.count(429) >= 20, codes  # the limit is 5 failures per account and address


def _async(seen: Seen):  # type: ignore[no-untyped-def]
    async def hook(response: httpx.Response) -> None:
        seen.hook(response)

    return hook


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:5432/fhir",
        "http://10.0.0.8/fhir",
        "http://[::1]:6379/fhir",
        "http://localhost:22/fhir",
    ],
)
def test_it_refuses_internal_addresses_in_the_live_check(
    http: httpx.Client, stack: Stack, target: str
) -> None:
    answer = http.post(
        "/api/portal/checks",
        json={"fhir_base": target, "vendor": "generic", "environment": "test"},
        headers={"Authorization": f"Bearer {stack.admin_token}"},
    )
    assert answer.status_code in (200, 422), answer.text[:300]
    body = answer.text.lower()
    assert answer.status_code == 422 or '"ok":false' in body.replace(" ", "")
    assert "does not connect to" in body, body[:400]


def test_it_closes_oversized_silent_and_flooding_sockets(stack: Stack) -> None:
    import json

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from tests.visits.support import Peer

    host = stack.base.removeprefix("http://")

    async def attack() -> None:
        # A 1 MiB frame is refused from its header.
        async with connect(f"ws://{host}/ws/visit", max_size=None) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.send("x" * (1 << 20))
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        # A socket that never says hello is closed after the deadline.
        async with connect(f"ws://{host}/ws/visit") as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 15)
        # Malformed frames get an error, never a crash.
        async with connect(f"ws://{host}/ws/visit") as ws:
            for frame in ('{"type": "hello", "token": NaN}', "[" * 5000, '{"type": 7}'):
                await ws.send(frame)
                answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert answer["type"] == "error", answer
            await ws.send(b"\x00\x01")
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer["type"] == "error"
        # A waiting patient's flood of candidates closes the patient, never the clinician.
        clinician = await Peer.connect(host, stack.provider_token, name="clinician")
        await clinician.wait_for(lambda m: m["type"] == "welcome")
        patient = await Peer.connect(host, stack.patient_token, name="patient")
        await patient.wait_for(lambda m: m["type"] == "welcome")
        for _ in range(5000):
            try:
                await patient.send(type="candidate", to=str(uuid.uuid4()), candidate=CANDIDATE)
            except ConnectionClosed:
                break
        assert await asyncio.wait_for(patient.closed, 15) in (4429, 4400)
        await clinician.send(type="ping", t=1)
        await clinician.wait_for(lambda m: m["type"] == "pong")
        assert not clinician.closed.done()
        await clinician.close()

    asyncio.run(attack())


def test_it_limits_device_test_posts_without_error(http: httpx.Client) -> None:
    codes = set()
    for n in range(40):
        answer = http.post(
            "/api/devicetest/results",
            json={"ctx": f"forged-{n}", "camera": "ok"},
        )
        codes.add(answer.status_code)
    assert codes <= {404, 410, 422, 429}, codes
    offers = [
        http.post("/api/devicetest/call", json={"ctx": "forged", "type": "offer",
                                                "sdp": "v=0\r\nm=video 9 UDP 0\r\n"})
        for _ in range(20)
    ]
    assert {o.status_code for o in offers} <= {404, 410, 422, 429, 503}


async def _epic_endpoint(stack: Stack) -> str:
    from openvisit.context import AppContext
    from tests.launch.test_epic_link import make_epic_endpoint
    from tests.support.backend import make_settings

    app = AppContext.create(make_settings(stack.db_url, public_url=stack.base))
    try:
        return await make_epic_endpoint(app, slug="acme-epic")
    finally:
        await app.close()


def test_it_never_turns_a_patient_epic_link_into_a_clinician_seat(
    http: httpx.Client, stack: Stack
) -> None:
    import time
    from urllib.parse import quote

    from tests.launch.test_epic_link import PATIENT_KEY, PROVIDER_KEY, gcm_link

    endpoint = asyncio.run(_epic_endpoint(stack))
    plain = (
        f"SessionID=CSN-1&ConferenceID=GROUP-9&ExternalID=PAT-9&ExternalIDType=MRN"
        f"&FirstName=Alex&LastName=Sample&Timestamp={int(time.time())}&LinkValidityPeriod=15"
    )
    patient_link = gcm_link(plain, key=PATIENT_KEY)
    stack.secrets.append(patient_link)
    seated = http.get(f"/launch/epic/{endpoint}/patient?data={quote(patient_link)}",
                      follow_redirects=False)
    assert seated.status_code == 303 and "/v/" in seated.headers["location"]
    stack.secrets.append(seated.headers["location"].rsplit("/v/", 1)[1])
    crossed = http.get(f"/launch/epic/{endpoint}/provider?data={quote(patient_link)}",
                       follow_redirects=False)
    assert crossed.status_code == 422 and "location" not in crossed.headers
    # A real clinician link, in production with no organisation IdP: refused, with the fix.
    provider_link = gcm_link(plain.replace("PAT-9", "PRAC-1"), key=PROVIDER_KEY)
    stack.secrets.append(provider_link)
    clinician = http.get(f"/launch/epic/{endpoint}/provider?data={quote(provider_link)}",
                         follow_redirects=False)
    assert clinician.status_code in (403, 409, 422, 503), clinician.status_code
    assert "location" not in clinician.headers
    assert "OPENVISIT_OIDC_ISSUER" in clinician.text
    # Frames: the room a patient reached says who may frame it (no one, here).
    room = http.get(seated.headers["location"].replace(stack.base, ""))
    assert "frame-ancestors 'none'" in room.headers["content-security-policy"]


def test_it_logged_no_error_no_token_and_no_contact(stack: Stack, seen: Seen) -> None:
    assert seen.server_errors == []
    text = stack.log_text()
    assert "unhandled_error" not in text and "Traceback" not in text, text[-4000:]
    for secret in [*stack.secrets, PHONE, PHONE[1:], "601123456", EMAIL]:
        assert secret not in text, secret[:12]
    # Nothing shaped like a join token or an e-mail address either.
    assert not re.search(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{32}", text)
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.-]+", text)
