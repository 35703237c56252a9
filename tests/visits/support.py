"""Helpers for visit tests: an organisation and visits, a real server, a socket client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import uvicorn
import websockets

from openvisit.context import AppContext
from openvisit.models import Appointment, EhrEndpoint, Organisation
from openvisit.models.base import utcnow
from openvisit.visits import service


@dataclass
class Seeded:
    organisation: Organisation
    endpoint: EhrEndpoint


async def seed_org(ctx: AppContext, *, timezone: str = "Europe/Prague",
                   label_mode: str = "role") -> Seeded:
    async with ctx.transaction() as session:
        org = Organisation(slug=f"org-{uuid.uuid4().hex[:8]}", display_name="Test clinic",
                           timezone=timezone, provider_label_mode=label_mode)
        session.add(org)
        await session.flush()
        endpoint = EhrEndpoint(organisation_id=org.id, name="Test EHR", vendor="generic",
                               environment="test", fhir_base="https://ehr.example/fhir",
                               client_id="openvisit")
        session.add(endpoint)
        await session.flush()
    return Seeded(org, endpoint)


async def make_appointment(ctx: AppContext, seeded: Seeded, *,
                           start_at: datetime | None = None,
                           end_at: datetime | None = None) -> Appointment:
    async with ctx.transaction() as session:
        appt = Appointment(
            organisation_id=seeded.organisation.id, endpoint_id=seeded.endpoint.id,
            ehr_appointment_id=f"appt-{uuid.uuid4().hex[:8]}", **ctx.refs.columns("Patient/1"),
            start_at=start_at or utcnow() + timedelta(minutes=5), end_at=end_at,
        )
        session.add(appt)
        await session.flush()
    return appt


@dataclass
class Links:
    visit_id: uuid.UUID
    provider: str
    patient: str
    extra: dict[str, str]

    @staticmethod
    def token(url: str) -> str:
        return url.rsplit("/v/", 1)[1].split("?")[0]


async def make_visit(ctx: AppContext, seeded: Seeded, *, patients: int = 1,
                     interpreters: int = 0) -> Links:
    """An appointment's visit starting in 5 minutes, with a clinician and patient links."""
    appt = await make_appointment(ctx, seeded)
    async with ctx.transaction() as session:
        visit = await service.open_visit(session, app=ctx, appointment=appt)
        provider = await service.seat_link(session, app=ctx, visit=visit, role="provider",
                                           ehr_user_id="Practitioner/7")
        extra: dict[str, str] = {}
        patient = await service.seat_link(session, app=ctx, visit=visit, role="patient",
                                          patient_ref="Patient/1")
        for n in range(2, patients + 1):
            extra[f"patient{n}"] = await service.seat_link(
                session, app=ctx, visit=visit, role="patient", patient_ref=f"Patient/{n}")
        for n in range(1, interpreters + 1):
            extra[f"interpreter{n}"] = await service.seat_link(
                session, app=ctx, visit=visit, role="interpreter")
    return Links(visit.id, provider, patient, extra)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: The servers :func:`serve` runs, by the host it yielded (for :func:`handlers_running`).
_SERVERS: dict[str, uvicorn.Server] = {}


async def handlers_running(host: str, count: int, *, timeout: float = 10.0) -> None:
    """Return once the app served at ``host`` is handling exactly ``count`` requests and
    sockets. A socket counts until its handler has returned, cleanup included (seat released,
    events written and their after-commit publishes sent), so this is the moment a closed
    socket has done everything it will ever do."""
    tasks = _SERVERS[host].server_state.tasks
    deadline = asyncio.get_running_loop().time() + timeout
    while len(tasks) != count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(tasks)} handlers still running at {host}, not {count}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def serve(ctx: AppContext) -> AsyncIterator[str]:
    """The full app on a real uvicorn server in this event loop; yields its base URL.

    No lifespan: ``ctx`` is already started by its fixture (starting it twice would open a
    second Redis connection).
    """
    from openvisit.app import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(ctx=ctx), host="127.0.0.1", port=port,
                            log_config=None, lifespan="off", ws_ping_interval=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    host = f"127.0.0.1:{port}"
    _SERVERS[host] = server
    try:
        yield host
    finally:
        _SERVERS.pop(host, None)
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


class Peer:
    """A signalling client that records every message it receives."""

    def __init__(self, ws: Any, name: str) -> None:
        self.ws = ws
        self.name = name
        self.inbox: list[dict[str, Any]] = []
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, host: str, token: str, *, name: str = "peer",
                      session: str | None = None, hello: bool = True) -> Peer:
        ws = await websockets.connect(f"ws://{host}/ws/visit")
        peer = cls(ws, name)
        if hello:
            await peer.send(type="hello", token=token, session=session or uuid.uuid4().hex[:16])
        return peer

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                self.inbox.append(json.loads(frame))
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closed.done():
                self.closed.set_result(self.ws.close_code)

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def wait_for(self, predicate: Any, *, timeout: float = 5.0) -> dict[str, Any]:
        """The first message (already received or arriving) that satisfies ``predicate``."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen = 0
        while True:
            for message in self.inbox[seen:]:
                if predicate(message):
                    return message
            seen = len(self.inbox)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.name}: no matching message in {self.inbox!r}")
            if self.closed.done() and seen == len(self.inbox):
                raise AssertionError(f"{self.name}: closed ({self.closed.result()}) "
                                     f"without a matching message in {self.inbox!r}")
            await asyncio.sleep(0.01)

    async def state(self, predicate: Any = lambda m: True, *,
                    timeout: float = 5.0) -> dict[str, Any]:
        return await self.wait_for(lambda m: m.get("type") == "state" and predicate(m),
                                   timeout=timeout)

    async def round_trip(self) -> None:
        """Ping and wait for its pong. The server writes one socket's frames in order, so
        every frame it queued for this peer before the pong has arrived once this returns."""
        marker = uuid.uuid4().int % 10**12
        await self.send(type="ping", t=marker)
        await self.wait_for(lambda m: m.get("type") == "pong" and m.get("t") == marker)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.inbox if m.get("type") == kind]

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._reader, timeout=5)
