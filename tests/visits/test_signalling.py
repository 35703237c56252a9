"""The signalling socket against a real server: lobby enforcement, relay, presence."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models import AuditLog, QualitySample
from openvisit.models.visit import Participant, VisitEvent
from tests.visits.support import Links, Peer, handlers_running, make_visit, seed_org, serve


def tok(url: str) -> str:
    return Links.token(url)


async def admit(host: str, links: Links, participant_id: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://{host}") as http:
        return await http.post(
            f"/api/visits/{links.visit_id}/participants/{participant_id}/admit",
            headers={"Authorization": f"Bearer {tok(links.provider)}"},
        )


async def test_it_keeps_a_waiting_patient_blind_and_refuses_its_signalling(
    ctx: AppContext,
) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        provider = await Peer.connect(host, tok(links.provider), name="provider")
        await provider.state(lambda m: m["you"]["state"] == "admitted")
        patient = await Peer.connect(host, tok(links.patient), name="patient")
        welcome = await patient.wait_for(lambda m: m["type"] == "welcome")
        pid = welcome["you"]["id"]
        lobby = await patient.state()
        assert lobby["you"]["state"] == "waiting"
        assert lobby["peers"] == [] and "roster" not in lobby
        # The provider sees the patient waiting, with the time they started waiting.
        roster = await provider.state(lambda m: any(
            s["id"] == pid and s["state"] == "waiting" and s["waiting_since"]
            for s in m["roster"]))
        provider_id = next(s["id"] for s in roster["roster"] if s["role"] == "provider")

        for kind, extra in (("offer", {"sdp": "v=0"}), ("candidate", {"candidate": None}),
                            ("answer", {"sdp": "v=0"}), ("restart", {})):
            await patient.send(type=kind, to=provider_id, **extra)
            error = await patient.wait_for(
                lambda m, k=kind: m["type"] == "error" and m.get("rejected") == k)
            assert error["code"] == "not_admitted"
        # Everything the server queued for the patient meanwhile has arrived.
        await patient.round_trip()
        async with ctx.transaction() as session:
            audits = (await session.execute(select(AuditLog).where(
                AuditLog.action == "signalling.rejected_before_admit"))).scalars().all()
        assert len(audits) == 4 and {a.object_id for a in audits} == {pid}
        # Still no identity of anyone else reached the waiting patient.
        assert all(m.get("peers", []) == [] for m in patient.of_type("state"))
        assert not any(provider_id in str(m) for m in patient.inbox)
        # Barrier for the provider: once admitted, the patient's next offer travels the path
        # any earlier one would have (its channel on the bus, the relay, the provider's
        # socket), in order. When it arrives, nothing sent from the lobby came before it.
        assert (await admit(host, links, pid)).status_code == 200
        await patient.state(lambda m: m["you"]["state"] == "admitted")
        await patient.send(type="offer", to=provider_id, sdp="v=0 barrier")
        await provider.wait_for(lambda m: m["type"] == "offer" and m["sdp"] == "v=0 barrier")
        assert not [m for m in provider.inbox if m["type"] in ("offer", "answer", "candidate",
                                                               "restart")
                    and m.get("sdp") != "v=0 barrier"]
        await patient.close()
        await provider.close()


async def test_it_relays_signalling_between_admitted_peers_only(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        provider = await Peer.connect(host, tok(links.provider), name="provider")
        pwelcome = await provider.wait_for(lambda m: m["type"] == "welcome")
        patient = await Peer.connect(host, tok(links.patient), name="patient")
        welcome = await patient.wait_for(lambda m: m["type"] == "welcome")
        await patient.state(lambda m: m["you"]["state"] == "waiting")
        assert (await admit(host, links, welcome["you"]["id"])).status_code == 200

        state = await patient.state(lambda m: m["you"]["state"] == "admitted")
        assert [p["role"] for p in state["peers"]] == ["provider"]
        assert "label" not in state["peers"][0]  # patients see "Your clinician", not a label
        await provider.state(lambda m: any(p["id"] == welcome["you"]["id"] for p in m["peers"]))

        await patient.send(type="offer", to=pwelcome["you"]["id"], sdp="v=0 offer")
        offer = await provider.wait_for(lambda m: m["type"] == "offer")
        assert offer["from"] == welcome["you"]["id"] and offer["sdp"] == "v=0 offer"
        assert offer["from_session"]
        await provider.send(type="answer", to=welcome["you"]["id"], sdp="v=0 answer")
        assert (await patient.wait_for(lambda m: m["type"] == "answer"))["sdp"] == "v=0 answer"
        await provider.send(type="candidate", to=welcome["you"]["id"],
                            candidate={"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
                                       "sdpMid": "0", "sdpMLineIndex": 0, "evil": "x"})
        cand = await patient.wait_for(lambda m: m["type"] == "candidate")
        assert "evil" not in cand["candidate"]
        await patient.close()
        await provider.close()


async def test_it_sends_back_removes_and_ends_with_events(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx), patients=2)
    auth = {"Authorization": f"Bearer {tok(links.provider)}"}
    async with serve(ctx) as host, httpx.AsyncClient(base_url=f"http://{host}") as http:
        provider = await Peer.connect(host, tok(links.provider), name="provider")
        p1 = await Peer.connect(host, tok(links.patient), name="p1")
        p2 = await Peer.connect(host, tok(links.extra["patient2"]), name="p2")
        id1 = (await p1.wait_for(lambda m: m["type"] == "welcome"))["you"]["id"]
        id2 = (await p2.wait_for(lambda m: m["type"] == "welcome"))["you"]["id"]
        base = f"/api/visits/{links.visit_id}/participants"
        assert (await http.post(f"{base}/{id1}/admit", headers=auth)).status_code == 200
        assert (await http.post(f"{base}/{id2}/admit", headers=auth)).status_code == 200
        both = await p1.state(lambda m: len(m["peers"]) == 2)
        assert sorted(p["role"] for p in both["peers"]) == ["patient", "provider"]

        assert (await http.post(f"{base}/{id1}/lobby", headers=auth)).status_code == 200
        back = await p1.state(lambda m: m["you"]["state"] == "waiting")
        assert back["peers"] == []
        await p2.state(lambda m: [p["role"] for p in m["peers"]] == ["provider"])

        assert (await http.post(f"{base}/{id2}/remove", headers=auth)).status_code == 200
        bye = await p2.wait_for(lambda m: m["type"] == "bye")
        assert bye["reason"] == "removed"
        assert await asyncio.wait_for(p2.closed, 5) == 4001
        # The removed patient's link is revoked.
        again = await Peer.connect(host, tok(links.extra["patient2"]), name="p2-again")
        refused = await again.wait_for(lambda m: m["type"] == "error")
        assert refused["fatal"] and refused["code"] == "not_found"

        assert (await http.post(f"/api/visits/{links.visit_id}/end", headers=auth)).json()[
            "status"] == "ended"
        assert (await p1.wait_for(lambda m: m["type"] == "bye"))["reason"] == "ended"
        assert (await provider.wait_for(lambda m: m["type"] == "bye"))["reason"] == "ended"
        await handlers_running(host, 0)  # every socket closed and cleaned up (its events)
    async with ctx.transaction() as session:
        kinds = [e.kind for e in (await session.execute(
            select(VisitEvent).where(VisitEvent.visit_id == links.visit_id)
            .order_by(VisitEvent.id))).scalars()]
    for expected in ("joined", "connected", "admitted", "started", "returned_to_lobby",
                     "removed", "ended", "disconnected"):
        assert expected in kinds, (expected, kinds)
    assert kinds.index("started") < kinds.index("admitted")


async def test_it_resumes_a_reconnecting_page_and_hands_the_seat_to_the_newest_socket(
    ctx: AppContext,
) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        provider = await Peer.connect(host, tok(links.provider), name="provider")
        patient = await Peer.connect(host, tok(links.patient), name="patient", session="page-one-1")
        pid = (await patient.wait_for(lambda m: m["type"] == "welcome"))["you"]["id"]
        assert (await admit(host, links, pid)).status_code == 200
        await patient.state(lambda m: m["you"]["state"] == "admitted")
        # A second tab takes the seat over: the first gets "replaced", the new one is in.
        tab2 = await Peer.connect(host, tok(links.patient), name="tab2", session="page-two-2")
        await tab2.state(lambda m: m["you"]["state"] == "admitted")
        assert (await patient.wait_for(lambda m: m["type"] == "bye"))["reason"] == "replaced"
        seen = await provider.state(lambda m: any(
            p["id"] == pid and p["session"] == "page-two-2" for p in m["peers"]))
        assert seen
        # The old socket closing does not mark the seat disconnected: once its handler has
        # returned (cleanup done), the seat is still connected, held by the new tab.
        await handlers_running(host, 2)  # the provider's socket and tab2's
        async with ctx.transaction() as session:
            seat = await session.get(Participant, uuid.UUID(pid))
            assert seat is not None and seat.connected
            assert (seat.connection_id or "").startswith("page-two-2.")
        assert any(s["connected"] for s in provider.of_type("state")[-1]["roster"]
                   if s["id"] == pid)
        await tab2.close()
        await provider.state(lambda m: not m["peers"])
        # Reconnecting (same page session) resumes straight into the call.
        tab2b = await Peer.connect(host, tok(links.patient), name="tab2b", session="page-two-2")
        await tab2b.state(lambda m: m["you"]["state"] == "admitted" and m["peers"])
        await tab2b.close()
        await provider.close()


async def test_it_stores_quality_samples_and_answers_pings(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        provider = await Peer.connect(host, tok(links.provider), name="provider")
        await provider.wait_for(lambda m: m["type"] == "welcome")
        await provider.send(type="ping", t=5)
        assert (await provider.wait_for(lambda m: m["type"] == "pong"))["t"] == 5
        await provider.send(type="quality", rtt_ms=12.5, jitter_ms=1.5, packet_loss_pct=0.5,
                            bitrate_kbps=900, frame_width=640, frame_height=480)
        await provider.send(type="quality", rtt_ms=13)  # within 5 s: dropped
        await provider.send(type="quality", rtt_ms=-1)
        assert (await provider.wait_for(lambda m: m["type"] == "error"))["code"] == "bad_quality"
        await provider.close()
    async with ctx.transaction() as session:
        samples = (await session.execute(select(QualitySample))).scalars().all()
    assert [(s.rtt_ms, s.frame_width) for s in samples] == [(12.5, 640)]


async def test_it_requires_hello_first_and_refuses_bad_links(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        raw = await Peer.connect(host, "", name="raw", hello=False)
        await raw.send(type="offer", to=str(links.visit_id), sdp="x")
        assert (await raw.wait_for(lambda m: m["type"] == "error"))["code"] == "need_hello"
        await raw.send(type="hello", token=tok(links.patient)[:-4] + "AAAA", session="abcdefgh")
        refused = await raw.wait_for(lambda m: m.get("fatal"))
        assert refused["code"] == "not_found"
        assert await asyncio.wait_for(raw.closed, 5) == 4404


async def test_it_keeps_staff_addresses_from_patients_when_staff_use_relays_only(
    db_url: str,
) -> None:
    from tests.support.backend import make_settings
    from tests.visits.test_protocol import HOST, RELAY

    settings = make_settings(db_url, turn_urls=["turn:127.0.0.1:3478"], turn_secret="s" * 16,
                             staff_ice_transport_policy="relay")
    ctx = AppContext.create(settings)
    await ctx.start()
    try:
        links = await make_visit(ctx, await seed_org(ctx))
        async with serve(ctx) as host:
            provider = await Peer.connect(host, tok(links.provider), name="provider")
            pwelcome = await provider.wait_for(lambda m: m["type"] == "welcome")
            patient = await Peer.connect(host, tok(links.patient), name="patient")
            welcome = await patient.wait_for(lambda m: m["type"] == "welcome")
            # The clinician's browser is told to gather relay candidates only; the patient's
            # follows the global policy.
            assert pwelcome["ice"]["iceTransportPolicy"] == "relay"
            assert welcome["ice"]["iceTransportPolicy"] == "all"
            assert (await admit(host, links, welcome["you"]["id"])).status_code == 200
            await patient.state(lambda m: m["peers"])
            await provider.state(lambda m: any(p["id"] == welcome["you"]["id"]
                                               for p in m["peers"]))
            to_patient, to_provider = welcome["you"]["id"], pwelcome["you"]["id"]
            # A clinician page that gathers host candidates anyway: the server drops them…
            await provider.send(type="candidate", to=to_patient,
                                candidate={"candidate": HOST, "sdpMid": "0"})
            await provider.send(type="candidate", to=to_patient,
                                candidate={"candidate": RELAY, "sdpMid": "0"})
            await provider.send(type="offer", to=to_patient,
                                sdp=f"v=0\r\nc=IN IP4 10.20.30.40\r\na={HOST}\r\na={RELAY}\r\n")
            offer = await patient.wait_for(lambda m: m["type"] == "offer")
            cands = patient.of_type("candidate")
            assert [c["candidate"]["candidate"] for c in cands] == [
                RELAY.replace("raddr 203.0.113.9 rport 40000", "raddr 0.0.0.0 rport 0")]
            assert "10.20.30.40" not in offer["sdp"] and "203.0.113.9" not in offer["sdp"]
            assert "typ relay" in offer["sdp"]
            # …while what the patient sends the clinician is relayed as it is.
            await patient.send(type="candidate", to=to_provider,
                               candidate={"candidate": HOST, "sdpMid": "0"})
            got = await provider.wait_for(lambda m: m["type"] == "candidate")
            assert got["candidate"]["candidate"] == HOST
            await patient.close()
            await provider.close()
    finally:
        await ctx.close()
