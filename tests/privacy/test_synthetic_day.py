"""A synthetic clinic day through the real processes, then the dump scanner (issue 18).

Three synthetic patients are booked by HL7 SIU over MLLP (python-hl7's ``mllp_send``) into a
real ``openvisit serve`` (web + worker + MLLP listener, logging at DEBUG). Their messages
carry names, birth dates, addresses, phone numbers, e-mail addresses and MRNs. The worker
sends each a confirmation (outbox provider); each patient opens the link in the message on
the web process; two of them have a visit (lobby, admit, leave, end) with write-back on;
the usage report is read with its opt-in patient column. Then the purge runs as it would
once the appointments are over, one patient is erased with ``openvisit privacy
erase-patient``, and the database (SQLite file with its WAL, or ``pg_dump``) and every log
line are searched for every identifier in plain, lower-case, URL-encoded and base64 forms.

Before this issue the MRN sat in clear in ``appointment.patient_ref``: this test finds it.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from openvisit.context import AppContext
from openvisit.models import (
    Appointment,
    EhrEndpoint,
    OutboxMessage,
    Participant,
    SmsSettings,
    Visit,
    utcnow,
)
from openvisit.notify import repository as notify_repo
from openvisit.reports import service as reports
from openvisit.visits import chat, lobby
from openvisit.visits import service as visits
from tests.feed.support import make_endpoint, mllp_send, siu, write_message
from tests.peers.fixtures import free_port, port_open
from tests.privacy.scanner import database_blobs, phone_forms, scan
from tests.support.backend import subprocess_env
from tests.support.procs import Proc, wait_for
from tests.visits.support import Links

pytestmark = pytest.mark.peers

SENDER = "EPIC^EPICADT"


@dataclass(frozen=True)
class Person:
    family: str
    given: str
    dob: str
    address: str
    e164: str
    national: str
    email: str
    mrn: str

    @property
    def ref(self) -> str:
        return f"OVPRIV|{self.mrn}"

    def identifiers(self) -> list[str]:
        street = self.address.split("^", 1)[0]
        return [self.family, self.given, self.dob, street, self.email, self.mrn,
                *phone_forms(self.e164, self.national)]


PEOPLE = [
    Person("Příkladová", "Zdeňka", "19471123", "Ukázková 17^^Brno^^60200^CZ",
           "+420601987123", "601 987 123", "zdenka.prikladova@example.cz", "MRN-PRIV-83125"),
    Person("Esempiano", "Giacomo", "19520914", "Via Campione 9^^Bologna^^40121^IT",
           "+393471234987", "347 123 4987", "giacomo.esempiano@example.it", "MRN-PRIV-99071"),
    Person("Samplewood", "Harriet", "19690305", "42 Fictional Lane^^Springfield^^01101^US",
           "+12025550187", "(202) 555-0187", "h.samplewood@example.org", "MRN-PRIV-45519"),
]


def booking(person: Person, n: int, start: str, end: str) -> bytes:
    """Patient ``n``'s SIU^S12 (the third writes its phone number in the national form)."""
    raw = siu(control_id=f"PRIV-{n}", filler=f"PRIV-APPT-{n}", csn=f"PRIV-CSN-{n}",
              start=start, end=end, sender=SENDER, phone=person.national if n == 3 else
              person.e164, email=person.email, patient=f"{person.mrn}^^^OVPRIV^MR")
    return (raw.replace(b"TEST^PATIENT||19800101|F|||||",
                        f"{person.family}^{person.given}||{person.dob}|F|||{person.address}||"
                        .encode()))


async def _outbox_links(ctx: AppContext) -> list[str]:
    async with ctx.db.read() as session:
        rows = (await session.scalars(select(OutboxMessage)
                                      .where(OutboxMessage.channel == "sms"))).all()
        texts = [ctx.cipher.decrypt(r.text_enc) for r in rows]
    return [word for text in texts for word in text.split() if "/v/" in word]


async def _count(ctx: AppContext, model: type[Appointment] | type[OutboxMessage]) -> int:
    async with ctx.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _visit(ctx: AppContext, ehr_appointment_id: str) -> uuid.UUID:
    """Patient waits, clinician joins and admits, patient leaves, clinician ends."""
    async with ctx.transaction() as session:
        appt = (await session.scalars(select(Appointment).where(
            Appointment.ehr_appointment_id == ehr_appointment_id))).one()
        visit = await visits.open_visit(session, app=ctx, appointment=appt)
        doctor_link = await visits.seat_link(session, app=ctx, visit=visit, role="provider",
                                             ehr_user_id="Practitioner/priv-1")
        patient_link = (await visits.patient_links(session, app=ctx, visit=visit))[0]
    async with ctx.transaction() as session:
        visit, seat = await lobby.join(session, app=ctx, token=Links.token(patient_link),
                                       connection_id="p.1")
        patient_id = seat.id
    async with ctx.transaction() as session:
        visit, doctor = await lobby.join(session, app=ctx, token=Links.token(doctor_link),
                                         connection_id="d.1")
        await lobby.admit(session, app=ctx, visit=visit, actor=doctor, target_id=patient_id)
    async with ctx.transaction() as session:
        seat = await session.get(Participant, patient_id)
        assert seat is not None
        await lobby.leave(session, app=ctx, visit=visit, participant=seat)
        visit, doctor = await lobby.staff_seat(session, app=ctx, token=Links.token(doctor_link))
        await lobby.end_visit(session, app=ctx, visit=visit, actor=doctor)
    return visit.id


class _Admin:
    """The usage report's caller: an organisation admin."""

    def __init__(self, organisation_id: uuid.UUID) -> None:
        self.organisation_id = organisation_id
        self.actor = "test:admin"

    def require(self, *roles: str, doing: str) -> None:
        return None


async def test_a_clinic_day_leaves_no_identifier_in_the_database_or_the_logs(
    ctx: AppContext, db_url: str, tmp_path: Path,
) -> None:
    endpoint = await make_endpoint(ctx, senders=(SENDER,), sms=True, timezone="UTC",
                                   slug="privacy-day")
    async with ctx.transaction() as session:
        await session.execute(update(SmsSettings).values(rate_limit_per_minute=6000))
        row = await session.get(EhrEndpoint, endpoint.id)
        assert row is not None
        row.options = {**(row.options or {}), "writeback": {"enabled": True}}
        org_id = endpoint.organisation_id
        await reports.set_patient_refs(session, caller=_Admin(org_id), on=True)
    start = utcnow() + timedelta(minutes=5)  # the visits' rooms are open
    fmt = "%Y%m%d%H%M%S"
    messages = [booking(p, n, start.strftime(fmt), (start + timedelta(minutes=20)).strftime(fmt))
                for n, p in enumerate(PEOPLE, 1)]
    feed = write_message(tmp_path, "day.hl7", b"\r\r".join(m.rstrip(b"\r") for m in messages))
    # The scanner finds every identifier in what was sent: a zero below means something.
    sent_blob = {"sent": feed.read_bytes()}
    for n, person in enumerate(PEOPLE, 1):
        written = person.national if n == 3 else person.e164
        for value in [*person.identifiers()[:6], written]:
            assert scan(sent_blob, [value]), value

    http_port, mllp_port = free_port(), free_port()
    public = f"http://127.0.0.1:{http_port}"
    serve = Proc(["serve", "--port", str(http_port), "--mllp-port", str(mllp_port)],
                 env=subprocess_env(db_url, OPENVISIT_LOG_LEVEL="DEBUG",
                                    OPENVISIT_PUBLIC_URL=public),
                 log=tmp_path / "serve.log")
    try:
        wait_for(lambda: port_open("127.0.0.1", mllp_port) and port_open("127.0.0.1",
                 http_port), timeout=60, what="openvisit serve", proc=serve)
        acks = mllp_send(mllp_port, feed)
        assert [a.code for a in acks] == ["AA"] * 3, [a.text for a in acks]
        deadline = utcnow() + timedelta(seconds=60)
        while len(set(await _outbox_links(ctx))) < 3 and utcnow() < deadline:
            assert serve.popen.poll() is None, serve.tail()
            await asyncio.sleep(0.2)
        links = sorted(set(await _outbox_links(ctx)))
        assert len(links) == 3, serve.tail()
        async with httpx.AsyncClient(timeout=20) as web:
            for link in links:
                page = await web.get(link.replace(str(ctx.settings.public_url), public))
                assert page.status_code == 200, page.status_code
        visit_ids = [await _visit(ctx, f"PRIV-APPT-{n}") for n in (1, 2)]
        async with ctx.db.read() as session:
            query = await reports.parse(session, settings=ctx.settings, caller=_Admin(org_id),
                                        params={})
            usage = await reports.usage(session, query=query, caller=_Admin(org_id))
        shown = {r.get("patient_refs") for r in usage.rows.rows}
        assert {PEOPLE[0].ref, PEOPLE[1].ref} <= shown  # the opt-in column opens the refs
    finally:
        serve.stop()

    everyone = [v for p in PEOPLE for v in p.identifiers()]
    logs = {"serve.log": (tmp_path / "serve.log").read_bytes()}
    assert b"writeback" in logs["serve.log"] and b"mllp" in logs["serve.log"]
    during = scan({**database_blobs(db_url), **logs}, everyone)
    assert during == [], during

    # The appointments are over: the purge runs as it will then (two days on).
    async with ctx.transaction() as session:
        await notify_repo.purge(session, now=utcnow() + timedelta(days=2),
                                receipts_before=utcnow() + timedelta(days=2))
        await chat.purge(session, now=utcnow() + timedelta(days=2))
    erase = Proc(["privacy", "erase-patient", PEOPLE[0].ref, "--org", "privacy-day", "--yes"],
                 env=subprocess_env(db_url), log=tmp_path / "erase.log")
    assert erase.popen.wait(timeout=60) == 0, erase.tail()
    erase.stop()
    assert "erased: 1 appointments, 1 visits" in erase.log.read_text()

    async with ctx.db.read() as session:
        left = {a.ehr_appointment_id for a in await session.scalars(select(Appointment))}
        kept_visits = set(await session.scalars(select(Visit.id)))
    assert left == {"PRIV-APPT-2", "PRIV-APPT-3"}
    assert visit_ids[0] not in kept_visits and visit_ids[1] in kept_visits
    logs["erase.log"] = (tmp_path / "erase.log").read_bytes()
    after = scan({**database_blobs(db_url), **logs}, everyone)
    assert after == [], after
