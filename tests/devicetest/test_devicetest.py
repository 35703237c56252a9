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
from openvisit.portal.records.service import DEVICE_TEST, sign_context_token
from tests.feed.support import make_endpoint


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


async def _offer_sdp() -> str:
    from aiortc import RTCPeerConnection, VideoStreamTrack

    pc = RTCPeerConnection()
    pc.addTrack(VideoStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


async def test_it_starts_at_most_the_slot_limit_of_calls_when_offers_race(
    ctx: AppContext, client: httpx.AsyncClient
) -> None:
    from openvisit.devicetest.views import loopback_calls

    value, sdp = await _token(ctx), await _offer_sdp()
    assert ctx.settings.devicetest_max_calls == 8
    loopback_calls(ctx).max_per_holder = 100  # every offer here comes from one address
    answers = await asyncio.gather(*(
        client.post("/api/devicetest/call", json={"ctx": value, "type": "offer", "sdp": sdp})
        for _ in range(20)))
    statuses = sorted(a.status_code for a in answers)
    calls = loopback_calls(ctx)
    # Eight answered, twelve told to try again (not 18 calls over a limit of 8).
    assert statuses == [200] * 8 + [503] * 12, statuses
    assert len(calls._calls) == 8 and calls.peak == 8
    for busy in (a for a in answers if a.status_code == 503):
        assert busy.headers["retry-after"] == "60"
        assert "try again in a minute" in busy.json()["error"]["message"]
    # A slot comes back when a call ends, and a refused or failed offer never keeps one.
    await calls.aclose()
    assert calls.held == 0
    broken = await client.post("/api/devicetest/call", json={
        "ctx": value, "type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"})
    assert broken.status_code == 422 and calls.held == 0
    again = await client.post("/api/devicetest/call",
                              json={"ctx": value, "type": "offer", "sdp": sdp})
    assert again.status_code == 200 and calls.held == 1
    await calls.aclose()


async def test_it_lets_one_address_hold_only_its_share_of_the_call_slots(
    ctx: AppContext, client: httpx.AsyncClient
) -> None:
    from openvisit.devicetest.views import loopback_calls

    value, sdp = await _token(ctx), await _offer_sdp()
    assert ctx.settings.devicetest_calls_per_address == 2
    answers = await asyncio.gather(*(
        client.post("/api/devicetest/call", json={"ctx": value, "type": "offer", "sdp": sdp})
        for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [200, 200, 503, 503, 503]
    calls = loopback_calls(ctx)
    # Another address still gets a slot while this one holds its two.
    answer = await calls.answer(sdp, holder="198.51.100.7")
    assert answer.startswith("v=0") and calls.held == 3
    await calls.aclose()
    assert calls.held == 0 and not calls._holders


async def test_it_gives_the_slot_back_when_the_page_goes_away_mid_answer(ctx: AppContext) -> None:
    from openvisit.devicetest.views import loopback_calls

    calls, sdp = loopback_calls(ctx), await _offer_sdp()
    task = asyncio.create_task(calls.answer(sdp))
    await asyncio.sleep(0)  # the offer has taken its slot and is negotiating
    assert calls.held == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls.held == 0
    await calls.aclose()


def _report(value: str) -> dict[str, Any]:
    return {"ctx": value, "camera": "passed", "microphone": "passed", "speaker": "passed",
            "call": {"status": "passed"}, "language": "es"}


async def test_it_limits_result_posts_per_address_with_retry_after(
    db_url: str, ctx: AppContext
) -> None:
    from openvisit.app import create_app
    from tests.support.backend import make_settings

    limited = AppContext.create(make_settings(db_url, devicetest_results_per_address_per_hour=3,
                                              devicetest_results_per_token_per_hour=5))
    await limited.start()
    try:
        value = await _token(ctx)
        app = create_app(ctx=limited)

        def client_from(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 50000))
            return httpx.AsyncClient(transport=transport, base_url="http://testserver")

        async with client_from("198.51.100.1") as one, client_from("198.51.100.2") as two:
            posted = [(await one.post("/api/devicetest/results", json=_report(value)))
                      for _ in range(4)]
            assert [r.status_code for r in posted] == [201, 201, 201, 429]
            refused = posted[-1]
            assert 0 < int(refused.headers["retry-after"]) <= 1200
            body = refused.json()["error"]
            assert body["code"] == "devicetest_too_many_results"
            # In the page's language, and it says what to do.
            assert "min" in body["message"] and "vuelva a enviar" in body["message"]
            # A forged link from that address is refused as well, before any look-up.
            forged = await one.post("/api/devicetest/results", json=_report("forged"))
            assert forged.status_code == 429
            # Another address still may, until the link's own hourly budget (5) is spent.
            more = [await two.post("/api/devicetest/results", json=_report(value))
                    for _ in range(3)]
            assert [r.status_code for r in more] == [201, 201, 429]
            assert "consulte a la clínica" in more[-1].json()["error"]["message"]
            assert int(more[-1].headers["retry-after"]) > 0
        async with ctx.db.read() as session:
            stored = (await session.scalars(select(VisitEvent))).all()
        assert len(stored) == 5
    finally:
        await limited.close()
