"""A clinician sends an interpreter's or guest's link by SMS or e-mail (issue 15 item 6):
through the notify.send job, in the invitee's language, once, within limits, never logged."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
import time_machine
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models import (
    Appointment,
    AuditLog,
    MessageLog,
    Notification,
    OptOut,
    Organisation,
    OutboxMessage,
    SmsSettings,
    utcnow,
)
from openvisit.models.visit import Visit, VisitEvent
from openvisit.notify import invites
from openvisit.visits import service
from tests.notify.support import Site, make_appointment, make_site, run_jobs
from tests.visits.support import Links

pytestmark = pytest.mark.backend


async def visit_of(app: AppContext, site: Site, *, region: str = "CZ") -> tuple[str, str]:
    """(visit id, the clinician's token) for an appointment of ``site`` in ten minutes."""
    appointment_id = await make_appointment(app, site, start_at=utcnow() + timedelta(minutes=10))
    async with app.transaction() as session:
        org = await session.get(Organisation, site.organisation_id)
        assert org is not None
        org.default_phone_region = region
        appointment = await session.get(Appointment, appointment_id)
        assert appointment is not None
        visit = await service.open_visit(session, app=app, appointment=appointment)
        provider = await service.seat_link(session, app=app, visit=visit, role="provider",
                                           ehr_user_id="Practitioner/7")
    return str(visit.id), Links.token(provider)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def invite(client: httpx.AsyncClient, visit_id: str, token: str, *, role: str = "guest",
                 lang: str | None = None) -> tuple[str, str]:
    """(participant id, link) of a new invite."""
    body = {"role": role} | ({"lang": lang} if lang else {})
    made = await client.post(f"/api/visits/{visit_id}/invites", json=body, headers=bearer(token))
    assert made.status_code == 201, made.text
    return made.json()["participant"]["id"], made.json()["url"]


async def send(client: httpx.AsyncClient, visit_id: str, token: str, seat: str,
               to: str) -> httpx.Response:
    return await client.post(f"/api/visits/{visit_id}/invites/{seat}/send", json={"to": to},
                             headers=bearer(token))


async def outbox(app: AppContext) -> list[dict[str, str | None]]:
    async with app.transaction() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
        return [{"channel": r.channel, "to": app.cipher.decrypt(r.recipient_enc),
                 "text": app.cipher.decrypt(r.text_enc),
                 "subject": app.cipher.decrypt(r.subject_enc) if r.subject_enc else None}
                for r in rows]


async def test_it_texts_an_interpreter_their_link_in_their_language_once(
    app: AppContext, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    site = await make_site(app, offsets=[], confirmations=False)
    visit_id, token = await visit_of(app, site)
    seat, link = await invite(client, visit_id, token, role="interpreter", lang="es")

    sent = await send(client, visit_id, token, seat, " 601 123 457 ")  # local, Czech region
    assert sent.status_code == 202, sent.text
    assert sent.json() == {"channel": "sms", "to": "+42*******457", "new": True}
    again = await send(client, visit_id, token, seat, "+420 601 123 457")  # a double click
    assert again.status_code == 202 and again.json()["new"] is False
    await run_jobs(app)

    [message] = await outbox(app)
    assert message["channel"] == "sms" and message["to"] == "+420601123457"
    text = message["text"] or ""
    assert "como intérprete" in text and link in text and "Example Hospital" in text
    async with app.transaction() as session:
        [log_row] = (await session.scalars(select(MessageLog))).all()
        assert (log_row.template, log_row.status) == ("invite", "sent")
        assert log_row.recipient_masked == "+42*******457" and log_row.language == "es"
        assert str(log_row.appointment_id) != "None"  # the visit's appointment: reports, FHIR
        [note] = (await session.scalars(select(Notification))).all()
        assert note.purpose == "invite" and note.appointment_id is None
        assert note.content_enc is None  # the typed number is gone once the message is out
        events = (await session.scalars(select(VisitEvent).where(
            VisitEvent.kind == "invite_sent"))).all()
        assert [e.data["channel"] for e in events] == ["sms"]
        audit = (await session.scalars(select(AuditLog).where(
            AuditLog.action == "visit.invite_send"))).all()
        assert len(audit) == 1 and "601123457" not in str(audit[0].after)
    # The link opens the interpreter's own lobby.
    page = await client.get("/v/" + Links.token(link))
    assert page.status_code == 200 and '"role": "interpreter"' in page.text
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert "601123457" not in logged and "601 123 457" not in logged


async def test_it_e_mails_a_guest_with_a_subject_and_the_link(
    app: AppContext, client: httpx.AsyncClient,
) -> None:
    site = await make_site(app, offsets=[], confirmations=False)
    visit_id, token = await visit_of(app, site)
    seat, link = await invite(client, visit_id, token)
    sent = await send(client, visit_id, token, seat, "Guest.Person@Example.ORG")
    assert sent.status_code == 202
    assert sent.json() == {"channel": "email", "to": "G***@example.org", "new": True}
    await run_jobs(app)
    [message] = await outbox(app)
    assert message["to"] == "Guest.Person@example.org"
    assert (message["subject"] or "").startswith("Invitation to a video visit on ")
    assert "as a guest" in (message["text"] or "") and link in (message["text"] or "")


async def test_it_refuses_what_it_cannot_send_and_says_why(
    app: AppContext, client: httpx.AsyncClient,
) -> None:
    site = await make_site(app, offsets=[], confirmations=False)
    visit_id, token = await visit_of(app, site)
    seat, _link = await invite(client, visit_id, token)
    for typed, says in [("12", "country code"), ("+1 800 555 0100", "country code"),
                        ("someone@", "e-mail address"), ("a@b", "e-mail address"),
                        ("x" * 300 + "@example.org", "too long"),
                        ("   ", "Enter a mobile number")]:
        answer = await send(client, visit_id, token, seat, typed)
        assert answer.status_code == 422, typed
        assert says in answer.json()["error"]["message"], (typed, answer.text)
    empty = await send(client, visit_id, token, seat, "")
    assert empty.status_code == 422
    # Only the visit's clinician, only invitees, not removed ones.
    async with app.transaction() as session:
        visit = await session.get(Visit, uuid.UUID(visit_id))
        assert visit is not None
        patient = await service.seat_link(session, app=app, visit=visit, role="patient",
                                          patient_ref="Patient/1")
    patient_seat = str(service.participant_id_of(Links.token(patient)))
    refused = await send(client, visit_id, Links.token(patient), seat, "+420601123458")
    assert refused.status_code == 403
    own = await send(client, visit_id, token, patient_seat, "+420601123458")
    assert own.status_code == 409 and "interpreter" in own.json()["error"]["message"]
    removed = await client.post(f"/api/visits/{visit_id}/participants/{seat}/remove",
                                headers=bearer(token))
    assert removed.status_code == 200
    gone = await send(client, visit_id, token, seat, "+420601123458")
    assert gone.status_code == 409 and "removed" in gone.json()["error"]["message"]
    assert await outbox(app) == []


async def test_it_needs_messaging_set_up_for_the_clinic(
    app: AppContext, client: httpx.AsyncClient,
) -> None:
    site = await make_site(app, offsets=[], confirmations=False, enabled=False)
    visit_id, token = await visit_of(app, site)
    seat, _link = await invite(client, visit_id, token)
    answer = await send(client, visit_id, token, seat, "+420601123459")
    assert answer.status_code == 409 and "portal" in answer.json()["error"]["message"]
    page = await client.get(f"/v/{token}?lang=en")
    assert "data-invite-send" not in page.text and "turns on messaging" in page.text
    async with app.transaction() as session:
        settings = await session.get(SmsSettings, site.endpoint_id)
        assert settings is not None
        settings.enabled = True
    page = await client.get(f"/v/{token}?lang=en")
    assert "data-invite-send" in page.text and 'for="invite-to"' in page.text


async def test_it_limits_the_links_a_visit_sends_an_hour(
    configure: Callable[..., AppContext], client: httpx.AsyncClient,
) -> None:
    app = configure(invite_sends_per_hour=2)
    site = await make_site(app, offsets=[], confirmations=False)
    visit_id, token = await visit_of(app, site)
    seat, _link = await invite(client, visit_id, token)
    for n in (1, 2):
        assert (await send(client, visit_id, token, seat, f"+42060112346{n}")).status_code == 202
    over = await send(client, visit_id, token, seat, "+420601123463")
    assert over.status_code == 429 and "Copy the link" in over.json()["error"]["message"]
    with time_machine.travel(utcnow() + timedelta(minutes=61), tick=False):
        later = await send(client, visit_id, token, seat, "+420601123463")
    assert later.status_code == 202


async def test_it_sends_nothing_for_a_link_withdrawn_or_an_opted_out_number(
    app: AppContext, client: httpx.AsyncClient,
) -> None:
    site = await make_site(app, offsets=[], confirmations=False)
    visit_id, token = await visit_of(app, site)
    seat, _link = await invite(client, visit_id, token)
    other, _other_link = await invite(client, visit_id, token, role="interpreter")
    assert (await send(client, visit_id, token, seat, "+420601123470")).status_code == 202
    assert (await send(client, visit_id, token, other, "+420601123471")).status_code == 202
    async with app.transaction() as session:
        session.add(OptOut(organisation_id=site.organisation_id,
                           recipient_hash=app.hasher.hash("+420601123471")))
    # Removed after the send was asked for, before the worker got to it.
    removed = await client.post(f"/api/visits/{visit_id}/participants/{seat}/remove",
                                headers=bearer(token))
    assert removed.status_code == 200
    await run_jobs(app)
    assert await outbox(app) == []
    async with app.transaction() as session:
        rows = (await session.scalars(select(MessageLog).order_by(MessageLog.error))).all()
        assert [(r.status, r.error) for r in rows] == [("suppressed", "invite_withdrawn"),
                                                       ("suppressed", "opted_out")]


def test_it_reads_numbers_and_addresses_liberally_and_stores_them_exactly() -> None:
    assert invites.parse_address("07400 123456", region="GB") == ("sms", "+447400123456")
    assert invites.parse_address("+1 (415) 555-0132", region="CZ")[0] == "sms"
    assert invites.parse_address(" Ana.Ruiz+visit@Hospital.Example.ES ", region="ES") == (
        "email", "Ana.Ruiz+visit@hospital.example.es")
    for bad in ["ana@@example.org", "ana@example", "ana @example.org", "ana@exa..mple.org",
                "<ana@example.org>", "ana@-example.org"]:
        with pytest.raises(invites.InvalidInput):
            invites.parse_address(bad, region="ES")
