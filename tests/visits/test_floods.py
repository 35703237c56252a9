"""Floods an admitted or waiting participant can send, against a real server.

Relayed frames are rate-limited per sending socket: the excess is dropped and a sender that
keeps on is closed (4429), never the receiver. Reconnects and refused offers leave a bounded
number of visit_event and audit_log rows.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from openvisit.context import AppContext
from openvisit.models import AuditLog
from openvisit.models.visit import VisitEvent
from tests.visits.support import Links, Peer, handlers_running, make_visit, seed_org, serve

#: What one seat may add to visit_event (or audit_log) in a burst, whatever it sends.
ROW_BOUND = 40
CANDIDATE = {"candidate": "candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host " + "x" * 800,
             "sdpMid": "0", "sdpMLineIndex": 0}


def tok(url: str) -> str:
    return Links.token(url)


async def _slow_reader(host: str) -> ClientConnection:
    """A socket whose owner stops reading (a clinician on a poor link): a small kernel
    receive buffer and a short client queue, so the server's sends back up quickly."""
    h, _, port = host.partition(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((h, int(port)))
    sock.setblocking(False)
    return await connect(f"ws://{host}/ws/visit", sock=sock, max_queue=4, compression=None)


async def _admit(host: str, links: Links, participant_id: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{host}") as http:
        response = await http.post(
            f"/api/visits/{links.visit_id}/participants/{participant_id}/admit",
            headers={"Authorization": f"Bearer {tok(links.provider)}"})
        assert response.status_code == 200, response.text


async def test_it_closes_a_flooding_sender_and_never_the_clinician_it_floods(
    ctx: AppContext,
) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        clinician = await _slow_reader(host)
        await clinician.send(json.dumps({"type": "hello", "token": tok(links.provider),
                                         "session": "clinician-page-1"}))
        clinician_id = ""
        while not clinician_id:
            message = json.loads(await clinician.recv())
            if message["type"] == "welcome":
                clinician_id = message["you"]["id"]
        patient = await Peer.connect(host, tok(links.patient), name="patient")
        patient_id = (await patient.wait_for(lambda m: m["type"] == "welcome"))["you"]["id"]
        await _admit(host, links, patient_id)
        await patient.state(lambda m: m["you"]["state"] == "admitted")
        # The clinician's side knows the patient is in (its room relays to it) once its socket
        # shows the patient among its peers.
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await clinician.recv())
                if message["type"] == "state" and any(
                        p["id"] == patient_id for p in message.get("peers", [])):
                    break

        # The clinician stops reading; the patient floods it with 20,000 ~1 KB candidates.
        sent = 0
        for _ in range(20_000):
            try:
                await patient.ws.send(json.dumps({"type": "candidate", "to": clinician_id,
                                                  "candidate": CANDIDATE}))
            except ConnectionClosed:
                break
            sent += 1
        code = await asyncio.wait_for(patient.closed, 10)
        assert code == 4429, (code, sent)
        assert patient.ws.close_reason and "too many" in patient.ws.close_reason.lower()
        assert any(m["type"] == "error" and m["code"] == "rate_limited" for m in patient.inbox)

        # The clinician reads again: still open, it got at most a burst of the flood…
        candidates = 0
        peer_ready: dict[str, Any] = {}
        patient2 = await Peer.connect(host, tok(links.patient), name="patient-again")
        await patient2.state(lambda m: any(p["id"] == clinician_id for p in m["peers"]))
        await patient2.send(type="offer", to=clinician_id, sdp="v=0 after the flood")
        async with asyncio.timeout(15):
            while not peer_ready:
                message = json.loads(await clinician.recv())
                assert message["type"] != "bye", message
                if message["type"] == "candidate":
                    candidates += 1
                elif message["type"] == "offer":
                    peer_ready = message
        # …and still receives a normal frame from the reconnected patient afterwards.
        assert peer_ready["sdp"] == "v=0 after the flood" and peer_ready["from"] == patient_id
        assert 0 < candidates <= 400, candidates
        await clinician.send(json.dumps({"type": "ping", "t": 9}))
        async with asyncio.timeout(5):
            while json.loads(await clinician.recv())["type"] != "pong":
                pass
        await patient2.close()
        await clinician.close()


async def _count(ctx: AppContext, model: Any, *conditions: Any) -> int:
    async with ctx.db.read() as session:
        return int((await session.execute(
            select(func.count()).select_from(model).where(*conditions))).scalar_one())


async def test_it_bounds_the_rows_a_reconnecting_seat_adds(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        # 300 reconnects are 15 times the seat's burst of 20 rows (10 reconnects): past the
        # budget the rows stop growing, which a thousand would only show more slowly.
        for n in range(300):
            ws = await connect(f"ws://{host}/ws/visit", compression=None)
            await ws.send(json.dumps({"type": "hello", "token": tok(links.patient),
                                      "session": f"reconnect-{n:05d}"}))
            while json.loads(await ws.recv())["type"] != "state":
                pass
            await ws.close()
        await handlers_running(host, 0)  # every socket's disconnect is written
    visit_rows = await _count(ctx, VisitEvent, VisitEvent.visit_id == links.visit_id)
    # Two rows per socket (connected, disconnected) until the seat's budget is spent, then one
    # summary row per refill; the seat itself still reconnected every time.
    assert visit_rows <= ROW_BOUND, visit_rows
    async with ctx.db.read() as session:
        kinds = set((await session.execute(select(VisitEvent.kind).where(
            VisitEvent.visit_id == links.visit_id))).scalars())
    assert kinds >= {"joined", "connected", "disconnected"}


async def test_it_bounds_the_audit_rows_of_refused_offers(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        provider = await Peer.connect(host, tok(links.provider), name="provider")
        provider_id = (await provider.wait_for(lambda m: m["type"] == "welcome"))["you"]["id"]
        refused = 0
        while refused < 1000:
            patient = await Peer.connect(host, tok(links.patient), name="patient",
                                         session=uuid.uuid4().hex[:16])
            await patient.wait_for(lambda m: m["type"] == "welcome")
            try:
                for _ in range(100):
                    await patient.send(type="offer", to=provider_id, sdp="v=0 sneaky")
                    refused += 1
            except ConnectionClosed:
                pass
            await patient.close()
        await provider.close()
    rows = await _count(ctx, AuditLog, AuditLog.action == "signalling.rejected_before_admit")
    assert 1 <= rows <= ROW_BOUND, rows
