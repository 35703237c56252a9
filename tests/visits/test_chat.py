"""Lobby messages and in-visit chat over the signalling socket (issue 15 items 4 and 5).

Against a real server on both backends: who a message reaches (chat: the seats in the call,
every role, both ways; lobby messages: from the clinician to one waiting seat, never from a
patient), the limits, what is recorded (a lobby message's kind, never its text), and chat
kept encrypted and purged when the organisation stores it, never stored when it does not.
The cross-process case runs two ``openvisit web`` processes on PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from openvisit.context import AppContext
from openvisit.models import AuditLog, ChatMessage, Organisation
from openvisit.models.base import utcnow
from openvisit.models.visit import VisitEvent
from openvisit.signalling import protocol as p
from openvisit.visits import chat
from tests.support.backend import BACKEND, subprocess_env
from tests.visits.support import Links, Peer, make_visit, seed_org, serve
from tests.visits.webproc import web_process

SECRET = "Dr Novak here, my number is +420 601 123 456"


def tok(url: str) -> str:
    return Links.token(url)


async def _welcome(peer: Peer) -> str:
    return str((await peer.wait_for(lambda m: m["type"] == "welcome"))["you"]["id"])


async def _admit(host: str, links: Links, pid: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{host}") as http:
        response = await http.post(
            f"/api/visits/{links.visit_id}/participants/{pid}/admit",
            headers={"Authorization": f"Bearer {tok(links.provider)}"})
        assert response.status_code == 200, response.text


async def _store_chat(ctx: AppContext, links: Links, on: bool) -> None:
    async with ctx.transaction() as session:
        org_id = (await session.execute(select(Organisation.id))).scalars().all()
        await session.execute(update(Organisation).where(Organisation.id.in_(org_id))
                              .values(store_chat=on))


class Call:
    """A clinician, two patients (one admitted, one waiting) and an admitted interpreter."""

    def __init__(self, host: str, links: Links) -> None:
        self.host, self.links = host, links

    async def start(self) -> Call:
        links = self.links
        self.provider = await Peer.connect(self.host, tok(links.provider), name="provider")
        self.provider_id = await _welcome(self.provider)
        self.patient = await Peer.connect(self.host, tok(links.patient), name="patient")
        self.patient_id = await _welcome(self.patient)
        self.waiting = await Peer.connect(self.host, tok(links.extra["patient2"]), name="p2")
        self.waiting_id = await _welcome(self.waiting)
        self.interpreter = await Peer.connect(self.host, tok(links.extra["interpreter1"]),
                                              name="interpreter")
        self.interpreter_id = await _welcome(self.interpreter)
        for pid in (self.patient_id, self.interpreter_id):
            await _admit(self.host, links, pid)
        # Every seat's room has the admissions once each admitted socket sees all its peers.
        for peer in (self.patient, self.interpreter):
            await peer.state(lambda m: m["you"]["state"] == "admitted" and len(m["peers"]) == 2)
        await self.provider.state(lambda m: len(m["peers"]) == 2)
        await self.waiting.state(lambda m: m["you"]["state"] == "waiting")
        return self

    @property
    def peers(self) -> list[Peer]:
        return [self.provider, self.patient, self.waiting, self.interpreter]

    async def close(self) -> None:
        for peer in self.peers:
            await peer.close()


def _chats(peer: Peer) -> list[dict[str, object]]:
    return [m for m in peer.of_type("chat") if not m.get("mine")]


async def test_it_relays_chat_to_every_seat_in_the_call_and_never_to_the_lobby(
    ctx: AppContext,
) -> None:
    links = await make_visit(ctx, await seed_org(ctx), patients=2, interpreters=1)
    async with serve(ctx) as host:
        call = await Call(host, links).start()
        await call.patient.send(type="chat", text="  Is the <b>dose</b> 5 mg?  ")
        mine = await call.patient.wait_for(lambda m: m["type"] == "chat" and m.get("mine"))
        assert mine["text"] == "Is the <b>dose</b> 5 mg?"  # trimmed, never interpreted
        for peer in (call.provider, call.interpreter):
            got = await peer.wait_for(lambda m: m["type"] == "chat")
            assert got["from"] == call.patient_id and got["role"] == "patient"
            assert got["text"] == "Is the <b>dose</b> 5 mg?" and "mine" not in got
        # The other direction, from the clinician and from the interpreter.
        await call.provider.send(type="chat", text="Yes, 5 mg.")
        await call.interpreter.send(type="chat", text="Sí, cinco miligramos.")
        got = await call.patient.wait_for(lambda m: m["type"] == "chat"
                                          and m["from"] == call.provider_id)
        assert got["role"] == "provider" and got["text"] == "Yes, 5 mg."
        got = await call.patient.wait_for(lambda m: m["type"] == "chat"
                                          and m["from"] == call.interpreter_id)
        assert got["role"] == "interpreter" and got["text"] == "Sí, cinco miligramos."
        # Barrier for the waiting patient: a lobby message sent after the three chats
        # arrived travels on the same channel any chat to it would have.
        await call.provider.send(type="lobby_message", to=call.waiting_id, preset="stay")
        await call.waiting.wait_for(lambda m: m["type"] == "lobby_message")
        assert call.waiting.of_type("chat") == []
        # Nobody got their own message relayed back as someone else's.
        for peer, pid in ((call.patient, call.patient_id), (call.provider, call.provider_id)):
            assert all(m["from"] != pid for m in _chats(peer))
        assert len(_chats(call.provider)) == 2 and len(_chats(call.interpreter)) == 2
        await call.close()


async def test_it_refuses_chat_from_a_seat_in_the_lobby(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        provider = await Peer.connect(host, tok(links.provider), name="provider")
        await _welcome(provider)
        patient = await Peer.connect(host, tok(links.patient), name="patient")
        await _welcome(patient)
        await patient.state(lambda m: m["you"]["state"] == "waiting")
        await patient.send(type="chat", text="hello?")
        error = await patient.wait_for(lambda m: m["type"] == "error")
        assert error["code"] == "not_in_call" and error["rejected"] == "chat"
        await provider.round_trip()
        assert provider.of_type("chat") == []
        await patient.close()
        await provider.close()


async def test_it_lets_only_the_clinician_message_a_waiting_patient_and_records_no_text(
    ctx: AppContext,
) -> None:
    links = await make_visit(ctx, await seed_org(ctx), patients=2, interpreters=1)
    async with serve(ctx) as host:
        call = await Call(host, links).start()
        await call.provider.send(type="lobby_message", to=call.waiting_id, preset="late_10")
        got = await call.waiting.wait_for(lambda m: m["type"] == "lobby_message")
        assert got["preset"] == "late_10" and "text" not in got
        assert "from" not in got and call.provider_id not in str(call.waiting.inbox)
        sent = await call.provider.wait_for(lambda m: m["type"] == "lobby_message_sent")
        assert sent["to"] == call.waiting_id and sent["preset"] == "late_10"
        await call.provider.send(type="lobby_message", to=call.waiting_id, text=SECRET)
        got = await call.waiting.wait_for(lambda m: m["type"] == "lobby_message"
                                          and "text" in m)
        assert got["text"] == SECRET and "preset" not in got

        # Patients cannot message the lobby: not from the call, not from the lobby.
        for peer in (call.patient, call.waiting, call.interpreter):
            await peer.send(type="lobby_message", to=call.waiting_id, preset="stay")
            error = await peer.wait_for(lambda m: m["type"] == "error"
                                        and m["rejected"] == "lobby_message")
            assert error["code"] == "staff_only"
        # A seat in the call is not in the lobby.
        await call.provider.send(type="lobby_message", to=call.patient_id, preset="stay")
        error = await call.provider.wait_for(lambda m: m["type"] == "error")
        assert error["code"] == "not_waiting"
        await call.waiting.round_trip()
        assert [m.get("preset", "text") for m in call.waiting.of_type("lobby_message")] == [
            "late_10", "text"]
        for peer in (call.patient, call.interpreter):
            assert peer.of_type("lobby_message") == []
        await call.close()

    async with ctx.transaction() as session:
        events = (await session.execute(select(VisitEvent).where(
            VisitEvent.kind == "lobby_message").order_by(VisitEvent.id))).scalars().all()
        audits = (await session.execute(select(AuditLog).where(
            AuditLog.action == "visit.lobby_message").order_by(AuditLog.id))).scalars().all()
        everything = [e.data for e in (await session.execute(select(VisitEvent))).scalars()]
        everything += [a.after for a in (await session.execute(select(AuditLog))).scalars()]
    assert [(str(e.participant_id), e.data["message"]) for e in events] == [
        (call.waiting_id, "late_10"), (call.waiting_id, "text")]
    assert {e.data["by"] for e in events} == {call.provider_id}
    assert [(a.object_id, a.actor, (a.after or {})["message"]) for a in audits] == [
        (call.waiting_id, "Practitioner/7", "late_10"),
        (call.waiting_id, "Practitioner/7", "text")]
    # The number as written ("601 123"), never a bare "601": a UUID in the rows may hold that.
    assert "601 123" not in str(everything) and "Novak" not in str(everything)


async def test_it_limits_chat_and_lobby_messages_per_sender(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx), patients=2, interpreters=1)
    burst, lobby_burst = ctx.settings.ws_chat_burst, ctx.settings.ws_lobby_messages_burst
    async with serve(ctx) as host:
        call = await Call(host, links).start()
        for n in range(burst + 5):
            await call.patient.send(type="chat", text=f"message {n}")
        error = await call.patient.wait_for(lambda m: m["type"] == "error")
        assert error["code"] == "rate_limited" and error["rejected"] == "chat"
        await call.patient.round_trip()
        echoed = [m["text"] for m in call.patient.of_type("chat")]
        assert len(echoed) < burst + 5 and echoed[:burst] == [f"message {n}"
                                                               for n in range(burst)]
        # Reconnecting does not buy a new budget: the bucket is the seat's, not the socket's.
        await call.patient.close()
        again = await Peer.connect(host, tok(links.patient), name="patient again")
        await again.state(lambda m: m["you"]["state"] == "admitted")
        await again.send(type="chat", text="one more")
        error = await again.wait_for(lambda m: m["type"] == "error")
        assert error["code"] == "rate_limited"
        # Barrier: the interpreter's chat reaches the clinician after anything of the
        # patient's would have (same channel, sent later).
        await call.interpreter.send(type="chat", text="barrier")
        await call.provider.wait_for(lambda m: m["type"] == "chat" and m["text"] == "barrier")
        assert [m["text"] for m in _chats(call.provider) if m["text"] != "barrier"] == echoed

        for _n in range(lobby_burst + 2):
            await call.provider.send(type="lobby_message", to=call.waiting_id, preset="late_few")
        error = await call.provider.wait_for(lambda m: m["type"] == "error")
        assert error["code"] == "rate_limited" and error["rejected"] == "lobby_message"
        await call.provider.round_trip()
        assert len(call.provider.of_type("lobby_message_sent")) == lobby_burst
        await again.close()
        for peer in (call.provider, call.waiting, call.interpreter):
            await peer.close()
    async with ctx.transaction() as session:
        events = (await session.execute(select(VisitEvent).where(
            VisitEvent.kind == "lobby_message"))).scalars().all()
    assert len(events) == lobby_burst


@pytest.mark.parametrize(("frame", "code"), [
    ({"type": "chat"}, "bad_chat"),
    ({"type": "chat", "text": ""}, "bad_chat"),
    ({"type": "chat", "text": " \u0000\u0007 "}, "bad_chat"),
    ({"type": "chat", "text": 5}, "bad_chat"),
    ({"type": "chat", "text": "x" * (p.MAX_CHAT_CHARS + 1)}, "bad_chat"),
    ({"type": "lobby_message", "to": "nope", "preset": "stay"}, "bad_target"),
    ({"type": "lobby_message", "to": str(uuid.uuid4())}, "bad_lobby_message"),
    ({"type": "lobby_message", "to": str(uuid.uuid4()), "preset": "stay", "text": "x"},
     "bad_lobby_message"),
    ({"type": "lobby_message", "to": str(uuid.uuid4()), "preset": "<script>"},
     "bad_lobby_message"),
    ({"type": "lobby_message", "to": str(uuid.uuid4()),
      "text": "x" * (p.MAX_LOBBY_TEXT_CHARS + 1)}, "bad_lobby_message"),
])
def test_it_refuses_malformed_chat_and_lobby_frames_with_a_clear_error(
    frame: dict[str, object], code: str,
) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.parse(json.dumps(frame))
    assert caught.value.code == code and caught.value.message


def test_it_parses_chat_and_lobby_messages_and_applies_the_lobby_rule() -> None:
    to = uuid.uuid4()
    message = p.parse('{"type":"chat","text":"line one\\nline two\\u0000"}')
    assert message == p.Chat(text="line one\nline two")
    preset = p.parse(f'{{"type":"lobby_message","to":"{to}","preset":"late_10"}}')
    assert preset == p.LobbyMessage(to=to, preset="late_10")
    assert p.check(p.Phase.ADMITTED, preset, staff=True) is p.Verdict.OK
    assert p.check(p.Phase.ADMITTED, preset) is p.Verdict.STAFF_ONLY
    assert p.check(p.Phase.LOBBY, preset) is p.Verdict.STAFF_ONLY
    assert p.check(p.Phase.LOBBY, message) is p.Verdict.NOT_IN_CALL
    assert p.check(p.Phase.ADMITTED, message) is p.Verdict.OK
    assert p.check(p.Phase.NEW, message) is p.Verdict.NEED_HELLO


async def test_it_answers_malformed_chat_on_a_live_socket_and_keeps_it_open(
    ctx: AppContext,
) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        provider = await Peer.connect(host, tok(links.provider), name="provider")
        await provider.state(lambda m: m["you"]["state"] == "admitted")
        await provider.send(type="chat", text="x" * (p.MAX_CHAT_CHARS + 1))
        await provider.send(type="lobby_message", to=str(uuid.uuid4()), preset="party")
        for code in ("bad_chat", "bad_lobby_message"):
            error = await provider.wait_for(lambda m, c=code: m["type"] == "error"
                                            and m["code"] == c)
            assert error["message"]
        await provider.round_trip()  # still open and answering
        await provider.close()


async def test_it_stores_no_chat_unless_the_organisation_keeps_it(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx), patients=2, interpreters=1)
    async with serve(ctx) as host:
        call = await Call(host, links).start()
        await call.patient.send(type="chat", text=SECRET)
        await call.provider.wait_for(lambda m: m["type"] == "chat")
        await call.patient.wait_for(lambda m: m["type"] == "chat" and m.get("mine"))
        await call.close()
    async with ctx.transaction() as session:
        assert (await session.execute(select(ChatMessage))).scalars().all() == []
        rows = [e.data for e in (await session.execute(select(VisitEvent))).scalars()]
    assert "Novak" not in str(rows)


async def test_it_keeps_chat_encrypted_when_on_and_purges_it_with_the_visit(
    ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx)
    links = await make_visit(ctx, seeded, patients=2, interpreters=1)
    await _store_chat(ctx, links, True)
    async with serve(ctx) as host:
        call = await Call(host, links).start()
        await call.patient.send(type="chat", text=SECRET)
        await call.provider.wait_for(lambda m: m["type"] == "chat")
        await call.provider.send(type="chat", text="Thank you.")
        await call.patient.wait_for(lambda m: m["type"] == "chat"
                                    and m["from"] == call.provider_id)
        async with ctx.transaction() as session:
            rows = (await session.execute(select(ChatMessage))).scalars().all()
            assert [str(r.participant_id) for r in rows] == [call.patient_id,
                                                             call.provider_id]
            assert all("Novak" not in r.text_enc and "Thank" not in r.text_enc for r in rows)
            kept = await chat.stored(session, app=ctx, visit_id=links.visit_id)
            assert [m.text for m in kept] == [SECRET, "Thank you."]
            # While the visit runs, kept until its join window closes plus the grace.
            assert all(r.purge_at > utcnow() + timedelta(hours=23) for r in rows)
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            ended = await http.post(f"/api/visits/{links.visit_id}/end",
                                    headers={"Authorization": f"Bearer {tok(links.provider)}"})
            assert ended.status_code == 200
        await call.provider.wait_for(lambda m: m["type"] == "bye")
        await call.close()
    grace = timedelta(hours=ctx.settings.contact_grace_hours)
    async with ctx.transaction() as session:
        rows = (await session.execute(select(ChatMessage))).scalars().all()
        assert len(rows) == 2
        assert all(abs((r.purge_at - (utcnow() + grace)).total_seconds()) < 60 for r in rows)
        assert await chat.purge(session, now=utcnow() + grace - timedelta(minutes=5)) == 0
    async with ctx.transaction() as session:
        assert await chat.purge(session, now=utcnow() + grace + timedelta(minutes=5)) == 2
    async with ctx.transaction() as session:
        assert (await session.execute(select(ChatMessage))).scalars().all() == []
        assert await chat.purge(session, now=utcnow() + grace + timedelta(days=1)) == 0


async def test_it_delivers_a_lobby_message_to_a_patient_on_another_web_process(
    ctx: AppContext, db_url: str, tmp_path: Path,
) -> None:
    if BACKEND != "postgres":
        pytest.skip("needs PostgreSQL + Redis: runs on the OPENVISIT_TEST_BACKEND=postgres pass")
    links = await make_visit(ctx, await seed_org(ctx))
    await _store_chat(ctx, links, False)
    with web_process(db_url, tmp_path / "a.log") as a, \
            web_process(db_url, tmp_path / "b.log") as b:
        provider = await Peer.connect(a.host, tok(links.provider), name="provider")
        await provider.state(lambda m: m["you"]["state"] == "admitted")
        patient = await Peer.connect(b.host, tok(links.patient), name="patient")
        pid = await _welcome(patient)
        await patient.state(lambda m: m["you"]["state"] == "waiting")
        await provider.state(lambda m: any(s["id"] == pid and s["state"] == "waiting"
                                           for s in m["roster"]), timeout=10)
        await provider.send(type="lobby_message", to=pid, preset="late_10")
        got = await patient.wait_for(lambda m: m["type"] == "lobby_message", timeout=10)
        assert got["preset"] == "late_10"
        await provider.send(type="lobby_message", to=pid, text=SECRET)
        got = await patient.wait_for(lambda m: m.get("text") == SECRET, timeout=10)
        # And chat both ways across the processes once the patient is in.
        await _admit(a.host, links, pid)
        await patient.state(lambda m: len(m["peers"]) == 1, timeout=10)
        await provider.state(lambda m: len(m["peers"]) == 1, timeout=10)
        await patient.send(type="chat", text="Can you hear me? " + SECRET)
        got = await provider.wait_for(lambda m: m["type"] == "chat", timeout=10)
        assert got["from"] == pid and got["text"].startswith("Can you hear me?")
        await provider.send(type="chat", text="Yes.")
        await patient.wait_for(lambda m: m["type"] == "chat" and m["text"] == "Yes.",
                               timeout=10)
        await patient.close()
        await provider.close()
    for log in (tmp_path / "a.log", tmp_path / "b.log"):
        text = log.read_text(errors="replace")
        assert "Novak" not in text and "601 123" not in text and "hear me" not in text
        assert "Traceback" not in text


async def test_it_turns_keeping_the_chat_on_and_off_from_the_command_line(
    ctx: AppContext, db_url: str,
) -> None:
    seeded = await seed_org(ctx)
    slug = seeded.organisation.slug
    for flag, said, expected in (("--on", "chat is kept", True),
                                 ("--off", "chat is not kept", False)):
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "openvisit", "org", "store-chat", flag,
                             "--org", slug],
            env=subprocess_env(db_url), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert said in done.stdout
        async with ctx.transaction() as session:
            org = await session.get(Organisation, seeded.organisation.id)
            assert org is not None
            await session.refresh(org)
            assert org.store_chat is expected
    async with ctx.transaction() as session:
        audits = (await session.execute(select(AuditLog).where(
            AuditLog.action == "organisation.store_chat").order_by(AuditLog.id))).scalars().all()
    assert [(a.actor, (a.after or {})["store_chat"]) for a in audits] == [
        ("cli", True), ("cli", False)]


def test_it_has_every_lobby_preset_in_every_language() -> None:
    from openvisit import i18n
    from openvisit.visits.strings import ROOM_STRINGS, room_strings

    for preset in p.LOBBY_PRESETS:
        english = ROOM_STRINGS[f"lobby.preset.{preset}"]
        for language in ("es", "cs", "it"):
            i18n.activate(language)
            try:
                assert room_strings()[f"lobby.preset.{preset}"] != english, (preset, language)
            finally:
                i18n.activate("en")
