"""LiveKit: participant tokens checked by livekit-api's own TokenVerifier, webhooks signed
and verified with its WebhookReceiver, and the lobby rule on both.

No LiveKit server runs here (it cannot be installed from the registries this project uses,
see PEERS.md), so the server test below is skipped saying so; everything that does not need
the server runs against the SDK's own verifier and receiver.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from google.protobuf.json_format import MessageToJson
from livekit import api
from sqlalchemy import select

from openvisit.context import AppContext, Services
from openvisit.media.backend import Seat
from openvisit.media.backends import livekit
from openvisit.media.livekit.backend import LiveKitBackend
from openvisit.models import Job
from tests.peers.fixtures import free_port, port_open
from tests.visits.support import Links, Peer, make_visit, seed_org, serve

KEY, SECRET = "APIovTest", "s" * 40


@pytest.fixture
async def lctx(ctx: AppContext) -> AsyncIterator[AppContext]:
    settings = ctx.settings.model_copy(update={
        "media_backend": "livekit", "livekit_url": "ws://127.0.0.1:7880",
        "livekit_api_key": KEY, "livekit_api_secret": SECRET, "media_grant_ttl_seconds": 300,
    })
    app = dataclasses.replace(ctx, settings=settings, services=Services())
    yield app
    await app.services.aclose()


def tok(url: str) -> str:
    return Links.token(url)


async def test_it_issues_tokens_for_one_room_and_identity_with_exactly_these_grants(
    lctx: AppContext,
) -> None:
    visit_id, pid = uuid.uuid4(), uuid.uuid4()
    before = datetime.now(UTC).timestamp()
    token = livekit(lctx).token_for(Seat(visit_id=visit_id, participant_id=pid, role="patient"))
    claims = api.TokenVerifier(KEY, SECRET).verify(token)
    assert claims.identity == str(pid) and claims.kind == "standard"
    video = claims.video
    assert video is not None
    assert (video.room, video.room_join) == (f"visit-{visit_id}", True)
    assert (video.can_publish, video.can_subscribe, video.can_publish_data) == (True, True, True)
    # Nothing beyond joining this one room: no admin, create, list, record, hidden, agent.
    assert not any((video.room_admin, video.room_create, video.room_list, video.room_record,
                    video.hidden, video.agent, video.ingress_admin, video.recorder,
                    video.can_update_own_metadata))
    assert video.can_publish_sources is None and video.destination_room is None
    assert not claims.name and not claims.metadata  # no names in tokens
    import jwt  # the SDK's own dependency: read the lifetime it signed

    exp = jwt.decode(token, SECRET, algorithms=["HS256"], issuer=KEY)["exp"]
    assert before + 290 <= exp <= before + 310
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises jwt's own error types
        api.TokenVerifier(KEY, "x" * 40).verify(token)


async def test_it_sends_a_token_to_a_seat_only_once_admitted(lctx: AppContext) -> None:
    links = await make_visit(lctx, await seed_org(lctx))
    async with serve(lctx) as host:
        provider = await Peer.connect(host, tok(links.provider), name="provider")
        await provider.state(lambda m: m["you"]["state"] == "admitted")
        granted = await provider.wait_for(lambda m: m["type"] == "media")
        assert api.TokenVerifier(KEY, SECRET).verify(granted["token"]).video.room == \
            f"visit-{links.visit_id}"
        patient = await Peer.connect(host, tok(links.patient), name="patient")
        welcome = await patient.wait_for(lambda m: m["type"] == "welcome")
        assert welcome["media"] == {"backend": "livekit"}
        pid = welcome["you"]["id"]
        await patient.state(lambda m: m["you"]["state"] == "waiting")
        await patient.round_trip()
        assert patient.of_type("media") == []  # waiting: no token at all
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            admitted = await http.post(
                f"/api/visits/{links.visit_id}/participants/{pid}/admit",
                headers={"Authorization": f"Bearer {tok(links.provider)}"})
        assert admitted.status_code == 200
        media = await patient.wait_for(lambda m: m["type"] == "media")
        claims = api.TokenVerifier(KEY, SECRET).verify(media["token"])
        assert claims.identity == pid and media["url"] == "ws://127.0.0.1:7880"
        async with lctx.transaction() as session:
            kinds = (await session.execute(select(Job.kind, Job.payload))).all()
        assert ("media.sync_seat", {"participant_id": pid}) in [(k, p) for k, p in kinds]
        await patient.close()
        await provider.close()


def _signed(event: api.WebhookEvent, *, secret: str = SECRET) -> tuple[str, str]:
    """A webhook body and its Authorization header, signed as LiveKit signs them."""
    body = MessageToJson(event)
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return body, api.AccessToken(KEY, secret).with_sha256(digest).to_jwt()


async def test_it_verifies_webhooks_and_revokes_a_seat_that_joins_unadmitted(
    lctx: AppContext,
) -> None:
    links = await make_visit(lctx, await seed_org(lctx))
    async with serve(lctx) as host:
        patient = await Peer.connect(host, tok(links.patient), name="patient")
        pid = (await patient.wait_for(lambda m: m["type"] == "welcome"))["you"]["id"]
        await patient.state(lambda m: m["you"]["state"] == "waiting")
        event = api.WebhookEvent(
            event="participant_joined", id="EV_1",
            room=api.Room(name=f"visit-{links.visit_id}"),
            participant=api.ParticipantInfo(identity=pid))
        body, auth = _signed(event)
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            headers = {"Content-Type": "application/webhook+json"}
            forged = await http.post("/hooks/livekit", content=body,
                                     headers={**headers, "Authorization": _signed(event,
                                              secret="f" * 40)[1]})
            tampered = await http.post("/hooks/livekit", content=body.replace(pid, str(
                uuid.uuid4())), headers={**headers, "Authorization": auth})
            unsigned = await http.post("/hooks/livekit", content=body, headers=headers)
            assert (forged.status_code, tampered.status_code, unsigned.status_code) == \
                (401, 401, 401)
            async with lctx.transaction() as session:
                assert (await session.execute(select(Job.kind))).scalars().all() == []
            ok = await http.post("/hooks/livekit", content=body,
                                 headers={**headers, "Authorization": auth})
            again = await http.post("/hooks/livekit", content=body,
                                    headers={**headers, "Authorization": auth})
        assert (ok.status_code, again.status_code) == (204, 204)
        async with lctx.transaction() as session:
            jobs = (await session.execute(select(Job.kind, Job.payload))).all()
        # A waiting seat in the room: one revocation (LiveKit's retry adds none).
        assert [(k, p) for k, p in jobs] == [("media.sync_seat", {"participant_id": pid})]
        await patient.close()


async def test_it_opens_and_closes_rooms_on_a_real_livekit_server(tmp_path: Path) -> None:
    binary = shutil.which("livekit-server")
    if binary is None:
        pytest.skip("no LiveKit server here: livekit-server is not packaged by Debian, PyPI "
                    "or npm (PEERS.md), and nothing else may be downloaded; tokens and "
                    "webhooks are tested above with livekit-api's own verifier and receiver")
    # Written for a machine that has it (`--dev` uses the key "devkey", secret "secret");
    # never run on this project's machines so far.
    port = free_port()
    log = tmp_path / "livekit.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "--dev", "--bind", "127.0.0.1", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        backend = LiveKitBackend(url=f"ws://127.0.0.1:{port}", api_key="devkey",
                                 api_secret="secret", ttl_seconds=60)
        visit_id = uuid.uuid4()
        await backend.open_room(visit_id)
        assert await backend.check() == "ok"
        async with api.LiveKitAPI(f"http://127.0.0.1:{port}", "devkey", "secret") as lk:
            rooms = await lk.room.list_rooms(api.ListRoomsRequest())
            assert f"visit-{visit_id}" in [r.name for r in rooms.rooms]
            await backend.revoke(Seat(visit_id=visit_id, participant_id=uuid.uuid4(),
                                      role="patient"))  # nobody there: still fine
            await backend.close_room(visit_id)
            rooms = await lk.room.list_rooms(api.ListRoomsRequest())
            assert f"visit-{visit_id}" not in [r.name for r in rooms.rooms]
    finally:
        proc.terminate()
        proc.wait(10)
