"""The sandbox's demo mode (issue 15 item 13): rows startable at any hour, a fresh round on
Reset demo, and the SIU^S12 it sends read by an independent parser (python-hl7)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import hl7
import httpx
from starlette.applications import Starlette

from openvisit.hl7v2 import MllpDecoder, encode_frame
from openvisit.sandbox import create_sandbox_app
from openvisit.sandbox.demo import SENDER, bring_to_now, siu_s12
from openvisit.sandbox.runtime import DemoMode, Sandbox

from .conftest import Clock
from .helpers import BASE, PATIENT_LAUNCH, PROVIDER_LAUNCH


def _demo_app(clock: Clock, *, mllp_port: int | None = None) -> Starlette:
    return create_sandbox_app(base_url=BASE, provider_launch_url=PROVIDER_LAUNCH,
                              patient_launch_url=PATIENT_LAUNCH, now=clock,
                              demo=DemoMode(mllp_port=mllp_port))


def _appointments(sandbox: Sandbox) -> dict[str, datetime]:
    return {a["id"]: datetime.fromisoformat(a["start"]) for a in sandbox.store.all("Appointment")}


def test_it_moves_a_row_that_is_not_due_to_now_and_leaves_a_due_one() -> None:
    clock = Clock()
    sandbox: Sandbox = _demo_app(clock).state.sandbox
    starts = _appointments(sandbox)
    assert len(starts) == 21 and all(f"-{sandbox.demo.round}-" in i for i in starts)  # type: ignore[union-attr]
    now = clock()
    far = next(i for i, s in starts.items() if abs(s - now) > timedelta(hours=2))
    assert bring_to_now(sandbox, far)
    moved = _appointments(sandbox)[far]
    assert timedelta(minutes=4) <= moved - now <= timedelta(minutes=5)
    assert not bring_to_now(sandbox, far)  # due now: left where it is


async def test_it_gives_a_fresh_round_on_reset() -> None:
    clock = Clock()
    app = _demo_app(clock)
    sandbox: Sandbox = app.state.sandbox
    before = set(_appointments(sandbox))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        reset = await http.post("/demo/reset", headers={"Referer": f"{BASE}/ehr/schedule"})
        assert reset.status_code == 303
        assert reset.headers["location"] == "/ehr/schedule?notice=reset"
        page = await http.get(reset.headers["location"])
    after = set(_appointments(sandbox))
    assert len(after) == 21 and not before & after
    assert "Demo reset" in page.text and 'data-action="reset-demo"' in page.text
    assert len(sandbox.store.all("Encounter")) == 21


async def test_it_sends_a_booking_that_an_independent_parser_reads() -> None:
    received: list[bytes] = []

    async def listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MllpDecoder()
        while not (messages := decoder.feed(await reader.read(65536))):
            pass
        received.append(messages[0])
        control = hl7.parse(messages[0].decode()).segment("MSH")(10)
        ack = f"MSH|^~\\&|OPENVISIT|OPENVISIT|||20300101||ACK|A1|P|2.5.1\rMSA|AA|{control}\r"
        writer.write(encode_frame(ack.encode()))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(listener, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clock = Clock()
    app = _demo_app(clock, mllp_port=port)
    sandbox: Sandbox = app.state.sandbox
    appointment = f"appt-{sandbox.demo.round}-9"  # type: ignore[union-attr]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=BASE) as http:
            sent = await http.post("/demo/siu", data={"appointment": appointment},
                                   headers={"Referer": f"{BASE}/ehr/schedule?practitioner=prac-3"})
    finally:
        server.close()
        await server.wait_closed()
    assert sent.headers["location"] == "/ehr/schedule?practitioner=prac-3&notice=siu-sent"
    message = hl7.parse(received[0].decode())
    assert str(message.segment("MSH")(9)) == "SIU^S12^SIU_S12"
    assert (str(message.segment("MSH")(3)), str(message.segment("MSH")(4))) == SENDER
    assert str(message.segment("SCH")(2)(0)(0)) == appointment
    pid = message.segment("PID")
    assert str(pid(13)).startswith("+12025550109^PRN^CP") and str(pid(15)) == "es"
    start = datetime.fromisoformat(sandbox.store.read("Appointment", appointment)["start"])
    assert str(message.segment("AIS")(4)) == start.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    again = siu_s12(sandbox, appointment, control_id="X")
    assert again is not None and b"|X|P|2.5.1" in again
