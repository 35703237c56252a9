"""Presence that survives a dead web process: heartbeats, the sweep, a live seat reclaimed.

The in-process tests use injected clocks: ``now=`` for the sweep, the sockets' clock
(``Rooms(clock=…)``) for the heartbeat interval; the two-process test
kills one real ``openvisit web`` with SIGKILL on PostgreSQL + Redis and waits for the sweep
to notice, through the surviving process's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models.base import utcnow
from openvisit.models.visit import Participant, VisitEvent
from openvisit.signalling.rooms import Rooms
from openvisit.visits import presence
from tests.support.backend import BACKEND
from tests.visits.support import Links, Peer, make_visit, seed_org, serve
from tests.visits.webproc import web_process


def tok(url: str) -> str:
    return Links.token(url)


async def _seat(ctx: AppContext, pid: str) -> Participant:
    async with ctx.transaction() as session:
        seat = (await session.execute(
            select(Participant).where(Participant.id == uuid.UUID(pid))
        )).scalar_one()
        return seat


async def _sweep(ctx: AppContext, **kw: object) -> int:
    async with ctx.transaction() as session:
        return await presence.sweep(session, app=ctx, **kw)  # type: ignore[arg-type]


async def _events(ctx: AppContext, pid: str, kind: str) -> list[VisitEvent]:
    async with ctx.transaction() as session:
        return list((await session.execute(select(VisitEvent).where(
            VisitEvent.participant_id == uuid.UUID(pid), VisitEvent.kind == kind)
        )).scalars().all())


async def _roster_after(peer: Peer, mark: int, pid: str, *, connected: bool,
                        timeout: float = 5.0) -> dict[str, object]:
    """The first state after ``peer.inbox[mark]`` showing seat ``pid`` (dis)connected."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for m in peer.inbox[mark:]:
            if m.get("type") == "state" and any(
                    s["id"] == pid and s["connected"] is connected for s in m["roster"]):
                return m
        assert asyncio.get_running_loop().time() < deadline, f"no such state: {peer.inbox}"
        await asyncio.sleep(0.01)


def _quick(ctx: AppContext, *, timeout: float) -> AppContext:
    """The same context (database, bus) with a short presence timeout."""
    settings = ctx.settings.model_copy(update={"presence_timeout_seconds": timeout,
                                               "presence_heartbeat_seconds": 0.05})
    return dataclasses.replace(ctx, settings=settings)


async def test_it_sweeps_a_silent_seat_and_tells_the_clinician(ctx: AppContext) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    async with serve(ctx) as host:
        provider = await Peer.connect(host, tok(links.provider), name="provider")
        await provider.state(lambda m: m["you"]["state"] == "admitted")
        patient = await Peer.connect(host, tok(links.patient), name="patient")
        pid = (await patient.wait_for(lambda m: m["type"] == "welcome"))["you"]["id"]
        await provider.state(lambda m: any(s["id"] == pid and s["connected"]
                                           for s in m["roster"]))
        # Within the timeout nobody is swept.
        assert await _sweep(ctx) == 0
        # The patient's socket goes silent (its process "died": it never closes) while the
        # provider's pings keep its seat fresh.
        later = utcnow() + timedelta(seconds=ctx.settings.presence_timeout_seconds + 1)
        quick = _quick(ctx, timeout=ctx.settings.presence_timeout_seconds)
        await provider.send(type="ping", t=1)
        await provider.wait_for(lambda m: m["type"] == "pong")
        async with ctx.transaction() as session:
            # The provider was heard from "later" too (as its heartbeat would have stored).
            from openvisit.visits import repository as repo

            me = next(s for s in (await repo.participants_of(session, links.visit_id))
                      if s.role == "provider")
            me.last_seen_at = later
        mark = len(provider.inbox)
        assert await _sweep(quick, now=later) == 1
        roster = await _roster_after(provider, mark, pid, connected=False)
        assert next(s for s in roster["roster"] if s["role"] == "provider")["connected"]
        seat = await _seat(ctx, pid)
        assert not seat.connected and seat.connection_id is None
        [event] = await _events(ctx, pid, "disconnected")
        assert event.data["reason"] == "stale"
        assert event.data["unseen_s"] >= ctx.settings.presence_timeout_seconds
        # Sweeping again changes nothing.
        assert await _sweep(quick, now=later) == 0
        await patient.ws.close()
        await provider.ws.close()


async def test_it_gives_a_live_socket_its_seat_back_on_its_next_heartbeat(
    ctx: AppContext,
) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    quick = _quick(ctx, timeout=0.5)
    # The sockets' clock: it stands still but for the test moving it on (no sleeping past
    # an interval).
    clock = [time.monotonic()]
    quick.services.visit_rooms = Rooms(quick, clock=lambda: clock[0])
    async with serve(quick) as host:
        provider = await Peer.connect(host, tok(links.provider), name="provider")
        welcome = await provider.wait_for(lambda m: m["type"] == "welcome")
        pid = welcome["you"]["id"]
        await provider.state(lambda m: m["you"]["state"] == "admitted")
        # Swept while alive (as if its heartbeats could not be stored for a while)…
        later = utcnow() + timedelta(seconds=5)
        mark = len(provider.inbox)
        assert await _sweep(quick, now=later) == 1
        await _roster_after(provider, mark, pid, connected=False)
        mark = len(provider.inbox)
        # …its next ping takes the seat back, and everyone sees it connected again.
        clock[0] += 0.06  # past presence_heartbeat_seconds (0.05 s) since the join
        await provider.send(type="ping", t=2)
        await _roster_after(provider, mark, pid, connected=True)
        seat = await _seat(ctx, pid)
        assert seat.connected and seat.connection_id is not None
        [resumed] = [e for e in await _events(ctx, pid, "connected")
                     if e.data.get("after") == "sweep"]
        assert resumed.data["resumed"] is True
        await provider.ws.close()


@contextlib.asynccontextmanager
async def _pinging(peer: Peer, every: float) -> AsyncIterator[None]:
    async def loop() -> None:
        n = 0
        while True:
            n += 1
            await peer.send(type="ping", t=n)
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def test_it_marks_the_seats_of_a_killed_web_process_disconnected(
    ctx: AppContext, db_url: str, tmp_path: Path,
) -> None:
    if BACKEND != "postgres":
        pytest.skip("needs PostgreSQL + Redis: runs on the OPENVISIT_TEST_BACKEND=postgres pass")
    links = await make_visit(ctx, await seed_org(ctx))
    env = {"OPENVISIT_PRESENCE_HEARTBEAT_SECONDS": "0.2", "OPENVISIT_LOG_LEVEL": "WARNING"}
    quick = _quick(ctx, timeout=2.0)
    with web_process(db_url, tmp_path / "a.log", **env) as a, \
            web_process(db_url, tmp_path / "b.log", **env) as b:
        provider = await Peer.connect(a.host, tok(links.provider), name="provider")
        provider_id = (await provider.wait_for(lambda m: m["type"] == "welcome"))["you"]["id"]
        await provider.state(lambda m: m["you"]["state"] == "admitted")
        patient = await Peer.connect(b.host, tok(links.patient), name="patient")
        pid = (await patient.wait_for(lambda m: m["type"] == "welcome"))["you"]["id"]
        await provider.state(lambda m: any(s["id"] == pid and s["connected"]
                                           for s in m["roster"]), timeout=10)
        joined = utcnow()
        async with _pinging(provider, 0.2), _pinging(patient, 0.2):
            # Both alive and pinging: once the joins are older than the 2 s timeout, only
            # the heartbeats stored since keep the seats from the sweep.
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                seen = [(await _seat(ctx, p)).last_seen_at for p in (pid, provider_id)]
                if all(t is not None and t > joined + timedelta(seconds=2.2) for t in seen):
                    break
                assert asyncio.get_running_loop().time() < deadline, f"no heartbeats: {seen}"
                await asyncio.sleep(0.1)
            assert await _sweep(quick) == 0
            mark = len(provider.inbox)
            b.proc.kill9()  # process B dies with the patient's socket: no close, no cleanup
            deadline = asyncio.get_running_loop().time() + 15
            while not (swept := await _sweep(quick)):
                assert asyncio.get_running_loop().time() < deadline, "patient never swept"
                await asyncio.sleep(0.2)
            assert swept == 1
            # The clinician, on the surviving process, sees the patient gone.
            await _roster_after(provider, mark, pid, connected=False, timeout=10)
            assert await _sweep(quick) == 0  # the live provider is never swept
        [event] = await _events(ctx, pid, "disconnected")
        assert event.data["reason"] == "stale"
        assert not (await _seat(ctx, pid)).connected
        await provider.ws.close()
