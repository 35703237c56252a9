"""The device test's server side: the page, the loop-back test call and the stored result."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models import ContextToken, utcnow
from openvisit.models.ops import QualitySample
from openvisit.models.visit import Visit, VisitEvent
from openvisit.portal.records import DEVICE_TEST, sign_context_token
from tests.scheduling.support import make_endpoint


async def _token(ctx: AppContext, *, revoked: bool = False) -> str:
    endpoint = await make_endpoint(ctx)
    async with ctx.transaction() as session:
        row = ContextToken(endpoint_id=endpoint.id, purpose=DEVICE_TEST,
                           revoked_at=utcnow() if revoked else None)
        session.add(row)
        await session.flush()
        return sign_context_token(ctx, row)


def _config(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="ov-config">(.*?)</script>', html, re.S)
    assert found, html[:500]
    return dict(json.loads(found.group(1)))


async def test_it_serves_the_page_for_the_record_s_link(
    ctx: AppContext, client: httpx.AsyncClient
) -> None:
    value = await _token(ctx)
    page = await client.get("/devicetest", params={"ctx": value, "lang": "it"})
    assert page.status_code == 200
    assert "Prova fotocamera e microfono" in page.text
    config = _config(page.text)
    assert config["ctx"] == value and config["callPath"] == "/api/devicetest/call"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # Every language the page offers keeps the token.
    assert page.text.count(f"ctx={value}") >= 4


async def test_it_explains_a_forged_or_withdrawn_link_in_the_visitor_s_language(
    ctx: AppContext, client: httpx.AsyncClient
) -> None:
    forged = await client.get("/devicetest", params={"ctx": "not-a-token", "lang": "es"})
    assert forged.status_code == 404
    assert "Pida a la clínica un enlace nuevo" in forged.text
    missing = await client.get("/devicetest", headers={"Accept-Language": "cs"})
    assert missing.status_code == 404 and "Požádejte kliniku" in missing.text
    withdrawn = await client.get("/devicetest", params={"ctx": await _token(ctx, revoked=True)})
    assert withdrawn.status_code == 410
    assert "withdrawn by the clinic" in withdrawn.text


async def test_it_answers_an_offer_with_a_peer_that_sends_the_media_back(
    ctx: AppContext, client: httpx.AsyncClient
) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

    value = await _token(ctx)
    pc = RTCPeerConnection()
    pc.addTrack(VideoStreamTrack())
    frames = 0

    @pc.on("track")
    def _count(track: Any) -> None:
        async def read() -> None:
            nonlocal frames
            while True:
                await track.recv()
                frames += 1

        asyncio.ensure_future(read()).add_done_callback(lambda f: f.exception())

    try:
        await pc.setLocalDescription(await pc.createOffer())
        answer = await client.post("/api/devicetest/call", json={
            "ctx": value, "type": "offer", "sdp": pc.localDescription.sdp})
        assert answer.status_code == 200, answer.text
        await pc.setRemoteDescription(RTCSessionDescription(**answer.json()))
        for _ in range(100):
            if frames >= 10:
                break
            await asyncio.sleep(0.1)
        # The frames came back from the server's peer: a real round trip through ICE/DTLS.
        assert frames >= 10
        assert pc.connectionState == "connected"
    finally:
        await pc.close()


async def test_it_refuses_a_bad_offer_and_a_busy_service_with_a_reason(
    ctx: AppContext, client: httpx.AsyncClient
) -> None:
    value = await _token(ctx)
    missing = await client.post("/api/devicetest/call", json={"ctx": value, "type": "offer"})
    assert missing.status_code == 422 and "sdp" in missing.text
    garbage = await client.post("/api/devicetest/call", json={
        "ctx": value, "type": "offer", "sdp": "this is not a session description"})
    assert garbage.status_code == 422 and "reload the page" in garbage.text
    broken = await client.post("/api/devicetest/call", json={
        "ctx": value, "type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"})
    assert broken.status_code == 422
    assert "Reload the page and try again" in broken.json()["error"]["message"]
    forged = await client.post("/api/devicetest/call", json={
        "ctx": "forged", "type": "offer", "sdp": "v=0\r\nm=audio 9 RTP/AVP 0\r\n"})
    assert forged.status_code == 404

    from openvisit.devicetest.views import loopback_calls

    calls = loopback_calls(ctx)
    calls.max_calls = 0
    busy = await client.post("/api/devicetest/call", json={
        "ctx": value, "type": "offer", "sdp": "v=0\r\nm=audio 9 RTP/AVP 0\r\n"})
    assert busy.status_code == 503
    assert "try again in a minute" in busy.json()["error"]["message"]


async def test_it_keeps_the_outcome_for_the_clinic_and_nothing_about_the_person(
    ctx: AppContext, client: httpx.AsyncClient
) -> None:
    value = await _token(ctx)
    report = {
        "ctx": value, "camera": "passed", "microphone": "passed", "speaker": "skipped",
        "call": {"status": "passed", "frames_decoded": 143, "rtt_ms": 3, "jitter_ms": 1.5,
                 "packet_loss_pct": 0, "frame_width": 640, "frame_height": 480,
                 "candidate_type": "host", "connect_ms": 410},
        "language": "es",
    }
    saved = await client.post("/api/devicetest/results", json=report)
    assert saved.status_code == 201 and saved.json()["passed"] is True
    async with ctx.db.read() as session:
        visit = (await session.scalars(select(Visit).where(Visit.kind == "devicetest"))).one()
        event = (await session.scalars(select(VisitEvent))).one()
        sample = (await session.scalars(select(QualitySample))).one()
        assert (visit.status, visit.appointment_id) == ("ended", None)
        assert event.kind == "devicetest_result" and event.data["call"]["frames_decoded"] == 143
        assert set(event.data) == {"endpoint_id", "context_token_id", "passed", "camera",
                                   "microphone", "speaker", "call", "language"}
        assert (sample.rtt_ms, sample.frame_width) == (3, 640)

    failed = await client.post("/api/devicetest/results", json={
        **report, "call": {"status": "failed"}})
    assert failed.json()["passed"] is False
    named = await client.post("/api/devicetest/results", json={**report, "name": "TEST"})
    assert named.status_code == 422
    wrong = await client.post("/api/devicetest/results", json={**report, "camera": "great"})
    assert wrong.status_code == 422 and "camera" in wrong.text


@pytest.mark.parametrize("lang", ["en", "es", "cs", "it"])
async def test_the_page_speaks_every_offered_language(
    ctx: AppContext, client: httpx.AsyncClient, lang: str
) -> None:
    page = await client.get("/devicetest", params={"ctx": await _token(ctx), "lang": lang})
    strings = re.search(r'id="ov-strings">(.*?)</script>', page.text, re.S)
    assert strings is not None
    table = json.loads(strings.group(1))
    assert f'lang="{lang}"' in page.text and len(table) >= 20
