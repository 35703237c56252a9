"""The lobby holds on Janus: a seat's VideoRoom token works only while it is admitted.

Against a real Janus (Debian's, VideoRoom plugin, HTTP API on loopback). The "patient"
below talks to Janus directly, with everything a leaked configuration could give it (the
API secret) plus its own seat token, the credential OpenVisit would present for it: while
the seat waits in the lobby, is sent back or removed, Janus refuses it as a publisher and
as a subscriber; once the visit ends the room is gone.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openvisit.app import create_app
from openvisit.context import AppContext, Services
from openvisit.jobs.worker import Worker
from openvisit.media import service as media
from openvisit.media.backends import backend_named
from openvisit.media.janus.backend import JanusBackend, feed_id, room_id
from openvisit.media.janus.client import JanusClient, JanusError
from openvisit.visits import lobby
from openvisit.visits import repository as repo
from tests.media.janus_peer import Janus, janus
from tests.visits.support import Links, make_visit, seed_org

UNAUTHORIZED, NO_SUCH_ROOM, NO_SUCH_FEED = 433, 426, 428


@pytest.fixture
def janus_server(tmp_path: Path) -> AsyncIterator[Janus]:  # type: ignore[misc]
    with janus(tmp_path / "janus") as server:
        yield server


@pytest.fixture
async def jctx(ctx: AppContext, janus_server: Janus) -> AsyncIterator[AppContext]:
    """The test context with Janus as the media backend of new visits."""
    settings = ctx.settings.model_copy(update={
        "media_backend": "janus", "janus_url": janus_server.url,
        "janus_api_secret": janus_server.api_secret, "janus_admin_key": janus_server.admin_key,
    })
    app = dataclasses.replace(ctx, settings=settings, services=Services())
    yield app
    await app.services.aclose()


async def _jobs(app: AppContext) -> None:
    await Worker(app).run_until_empty(timeout=20)


async def _join(app: AppContext, link: str) -> uuid.UUID:
    async with app.transaction() as session:
        _visit, seat = await lobby.join(session, app=app, token=Links.token(link),
                                        connection_id=f"s{uuid.uuid4().hex[:10]}.x")
        return seat.id


async def _act(app: AppContext, links: Links, action: str, target: uuid.UUID) -> None:
    async with app.transaction() as session:
        visit, actor = await lobby.staff_seat(session, app=app, token=Links.token(links.provider))
        if action == "end":
            await lobby.end_visit(session, app=app, visit=visit, actor=actor)
        else:
            await getattr(lobby, action)(session, app=app, visit=visit, actor=actor,
                                         target_id=target)


async def _token(app: AppContext, backend: JanusBackend, pid: uuid.UUID) -> str:
    async with app.transaction() as session:
        seat = await repo.participant_by_id(session, pid)
        assert seat is not None
        return backend.seat_token(media.seat_of(seat))


async def _as_client(server: Janus, body: dict[str, Any]) -> dict[str, Any] | int:
    """One VideoRoom request from an outside client: its data, or Janus's error code."""
    client = JanusClient(server.url, api_secret=server.api_secret)
    try:
        async with client.handle() as handle:
            return await handle.request(body)
    except JanusError as exc:
        assert exc.janus_code is not None, exc.message
        return exc.janus_code
    finally:
        await client.aclose()


async def _participants(server: Janus, room: int) -> set[int]:
    answer = await _as_client(server, {"request": "listparticipants", "room": room})
    assert isinstance(answer, dict), answer
    return {int(p["id"]) for p in answer["participants"]}


async def test_it_lets_only_admitted_seats_into_the_videoroom(
    jctx: AppContext, janus_server: Janus,
) -> None:
    links = await make_visit(jctx, await seed_org(jctx))
    provider = await _join(jctx, links.provider)  # a clinician is admitted on joining
    patient = await _join(jctx, links.patient)  # the patient waits in the lobby
    await _jobs(jctx)
    backend = backend_named(jctx, "janus")
    assert isinstance(backend, JanusBackend)
    room = room_id(links.visit_id)
    provider_token, patient_token = (await _token(jctx, backend, provider),
                                     await _token(jctx, backend, patient))

    def publish(token: str | None, pid: uuid.UUID) -> dict[str, Any]:
        body: dict[str, Any] = {"request": "join", "ptype": "publisher", "room": room,
                                "id": feed_id(pid)}
        if token is not None:
            body["token"] = token
        return body

    def subscribe(token: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"request": "join", "ptype": "subscriber", "room": room,
                                "streams": [{"feed": feed_id(provider)}]}
        if token is not None:
            body["token"] = token
        return body

    # The clinician's own token opens the room (so the tokens are the real credential).
    joined = await _as_client(janus_server, publish(provider_token, provider))
    assert isinstance(joined, dict) and joined["videoroom"] == "joined"
    # The waiting patient: no publishing, no subscribing, with or without its token, and no
    # editing the allowed list without the room secret.
    assert await _as_client(janus_server, publish(patient_token, patient)) == UNAUTHORIZED
    assert await _as_client(janus_server, publish(None, patient)) == UNAUTHORIZED
    assert await _as_client(janus_server, subscribe(patient_token)) == NO_SUCH_FEED
    listed = await _as_client(janus_server, {"request": "list"})
    assert isinstance(listed, dict) and room not in {r["room"] for r in listed["list"]}
    as_admin = await _as_client(janus_server, {"request": "list",
                                               "admin_key": janus_server.admin_key})
    assert isinstance(as_admin, dict)
    [config] = [r for r in as_admin["list"] if r["room"] == room]
    assert config["require_pvtid"] is True and config["is_private"] is True
    assert await _as_client(janus_server, {
        "request": "allowed", "room": room, "action": "add", "allowed": [patient_token],
        "secret": "guess"}) == UNAUTHORIZED

    # Admitted: the same token now joins.
    await _act(jctx, links, "admit", patient)
    await _jobs(jctx)
    client = JanusClient(janus_server.url, api_secret=janus_server.api_secret)
    try:
        async with client.handle() as held:  # the patient stays in the room on this handle
            answer = await held.request(publish(patient_token, patient))
            assert answer["videoroom"] == "joined"
            assert feed_id(patient) in await _participants(janus_server, room)
            # Back to the lobby: kicked out at once, and the token no longer joins.
            await _act(jctx, links, "return_to_lobby", patient)
            await _jobs(jctx)
            assert feed_id(patient) not in await _participants(janus_server, room)
            assert await _as_client(janus_server, publish(patient_token, patient)) == UNAUTHORIZED
    finally:
        await client.aclose()

    # Admitted again, then removed: neither the old nor the new version's token joins.
    await _act(jctx, links, "admit", patient)
    await _jobs(jctx)
    assert isinstance(await _as_client(janus_server, publish(patient_token, patient)), dict)
    await _act(jctx, links, "remove", patient)
    await _jobs(jctx)
    removed_token = await _token(jctx, backend, patient)
    for token in (patient_token, removed_token):
        assert await _as_client(janus_server, publish(token, patient)) == UNAUTHORIZED
    assert feed_id(patient) not in await _participants(janus_server, room)

    # The visit ends: the room is destroyed, so even the clinician's token finds nothing.
    await _act(jctx, links, "end", provider)
    await _jobs(jctx)
    assert await _as_client(janus_server, publish(provider_token, provider)) == NO_SUCH_ROOM
    assert await backend.check() == "ok"


async def test_it_reports_an_unreachable_janus_as_not_ready(jctx: AppContext) -> None:
    settings = jctx.settings.model_copy(update={"janus_url": "http://127.0.0.1:9/janus"})
    app = dataclasses.replace(jctx, settings=settings, services=Services())
    try:
        assert (await media.readiness(app)) == "unavailable (Janus is unreachable (ConnectError).)"
    finally:
        await app.services.aclose()


async def test_it_reports_janus_in_readyz_and_media_use_in_metrics(
    jctx: AppContext, janus_server: Janus,
) -> None:
    links = await make_visit(jctx, await seed_org(jctx))
    await _join(jctx, links.provider)
    patient = await _join(jctx, links.patient)
    await _act(jctx, links, "admit", patient)
    transport = httpx.ASGITransport(app=create_app(ctx=jctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        ready = (await http.get("/readyz")).json()
        assert ready["media_backend"] == "janus" and ready["checks"]["media"] == "ok"
        body = (await http.get("/metrics")).text
    assert 'openvisit_media_rooms{backend="janus"} 1.0' in body
    assert 'openvisit_media_publishers{backend="janus"} 2.0' in body
    assert 'openvisit_media_subscriptions{backend="janus"} 2.0' in body
