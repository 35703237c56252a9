"""The device-test report (issue 15 item 11: "The clinic can see this result"): every test a
patient ran from the clinic's link, on the page, its JSON and CSV; outcomes only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import time_machine
from fastapi import FastAPI

from openvisit.context import AppContext
from openvisit.models import ContextToken, EhrEndpoint
from openvisit.portal.records.service import DEVICE_TEST, sign_context_token
from tests.portal.conftest import Browser
from tests.reports.conftest import RANGE, March
from tests.reports.test_it_reports import csv_of

BrowserFactory = Callable[[str], Awaitable[Browser]]
CALL = {"status": "passed", "frames_decoded": 143, "rtt_ms": 42.4, "jitter_ms": 1.5,
        "packet_loss_pct": 0.5, "frame_width": 640, "frame_height": 480,
        "candidate_type": "srflx", "connect_ms": 410}


async def _link(ctx: AppContext, endpoint_id: Any) -> str:
    async with ctx.transaction() as session:
        row = ContextToken(endpoint_id=endpoint_id, purpose=DEVICE_TEST)
        session.add(row)
        await session.flush()
        return sign_context_token(ctx, row)


async def test_it_lists_each_device_test_the_clinic_s_patients_ran(
    ctx: AppContext, web: FastAPI, browser: BrowserFactory, march: March,
) -> None:
    value = await _link(ctx, march.site.endpoint_id)
    async with ctx.transaction() as session:
        endpoint = await session.get(EhrEndpoint, march.site.endpoint_id)
        assert endpoint is not None
        name, environment = endpoint.name, endpoint.environment
    patient = httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://t")
    for at, camera, call in ((datetime(2030, 3, 14, 9, 30, tzinfo=UTC), "passed", CALL),
                             (datetime(2030, 3, 15, 17, 5, tzinfo=UTC), "failed",
                              {"status": "failed"}),
                             (datetime(2030, 4, 2, 8, 0, tzinfo=UTC), "passed", CALL)):
        with time_machine.travel(at, tick=False):
            saved = await patient.post("/api/devicetest/results", json={
                "ctx": value, "camera": camera, "microphone": "passed", "speaker": "skipped",
                "call": call, "language": "cs"})
            assert saved.status_code == 201, saved.text
    await patient.aclose()

    rita = await browser("rita")
    report = (await rita.get("/api/reports/devicetests", params=RANGE)).json()
    assert (report["tests"], report["passed"]) == (2, 1)  # April's is outside the range
    assert report["rows"]["rows"] == [
        {"at": "2030-03-14T10:30:00+01:00", "endpoint": name, "environment": environment,
         "passed": True, "camera": "passed", "microphone": "passed", "speaker": "skipped",
         "call": "passed", "rtt_ms": 42.4, "packet_loss_pct": 0.5, "resolution": "640×480",
         "candidate_type": "srflx", "language": "cs"},
        {"at": "2030-03-15T18:05:00+01:00", "endpoint": name, "environment": environment,
         "passed": False, "camera": "failed", "microphone": "passed", "speaker": "skipped",
         "call": "failed", "rtt_ms": None, "packet_loss_pct": None, "resolution": None,
         "candidate_type": None, "language": "cs"}]
    assert await csv_of(rita, "devicetests") == [
        ["Time", "EHR endpoint", "Environment", "All passed", "Camera", "Microphone",
         "Speaker", "Test call", "Round trip (ms)", "Packet loss (%)", "Video received",
         "Connection", "Language"],
        ["2030-03-14 10:30", name, environment, "yes", "passed", "passed", "skipped",
         "passed", "42.4", "0.5", "640×480", "srflx", "cs"],
        ["2030-03-15 18:05", name, environment, "no", "failed", "passed", "skipped",
         "failed", "", "", "", "", "cs"]]
    # The other environment, or another endpoint: none of these.
    other = "production" if environment == "test" else "test"
    none = (await rita.get("/api/reports/devicetests",
                           params={**RANGE, "environment": other})).json()
    assert none["tests"] == 0
    page = await rita.get("/portal/reports/devicetests", params=RANGE)
    assert page.status_code == 200 and "Device tests" in page.text and "srflx" in page.text
    assert 'href="/portal/reports/devicetests' in page.text
