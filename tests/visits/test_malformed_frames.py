"""Malformed frames against a real ``openvisit web``: answered, never an exception in the log.

Hypothesis generates frames (binary, deeply nested JSON, NaN/Infinity, huge numbers, wrong
types, unknown kinds, non-UTF-8 text) and sends them before and after ``hello``. Each must be
answered with a protocol ``error`` frame (or a pong, or a close with a code), the socket must
still answer a ping afterwards unless it was closed, and the process log must hold no
traceback.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from openvisit.context import AppContext
from tests.visits.support import Links, make_visit, seed_org
from tests.visits.webproc import web_process

SERVER_TYPES = {"welcome", "state", "pong", "error", "bye", "offer", "answer", "candidate",
                "restart"}
#: Closes a malformed frame may earn: invalid UTF-8 (1007), too big (1009), too many errors
#: (4400) or messages (4429).
CLOSES = {1007, 1009, 4400, 4429}

json_leaves = (st.none() | st.booleans() | st.integers(min_value=-(10**400), max_value=10**400)
               | st.floats() | st.text(max_size=30))
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=20)
kinds = st.sampled_from(["hello", "ping", "quality", "offer", "answer", "candidate",
                         "restart", "state", "nope", "", "PING"]) | st.text(max_size=10)


@st.composite
def frames(draw: st.DrawFn) -> tuple[str, bytes | str]:
    """``(how, payload)``: "text" (a str), "binary" (bytes) or "raw" (bytes in a text frame)."""
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return "binary", draw(st.binary(max_size=300))
    if choice == 1:
        return "raw", draw(st.binary(min_size=1, max_size=80)) + b"\xff\xfe"  # not UTF-8
    if choice == 2:
        depth = draw(st.integers(17, 50_000))
        return "text", "[" * depth + "]" * depth
    if choice == 3:
        number = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "9" * 4400,
                                       "-" + "9" * 320]))
        field = draw(st.sampled_from(["t", "rtt_ms", "frame_width", "sdpMLineIndex"]))
        kind = draw(st.sampled_from(["ping", "quality", "candidate"]))
        return "text", (f'{{"type":"{kind}","to":"{uuid.uuid4()}","{field}":{number},'
                        f'"candidate":{{"candidate":"c","{field}":{number}}}}}')
    if choice == 4:
        return "text", draw(st.text(max_size=200))
    message = draw(st.fixed_dictionaries({"type": kinds}, optional={
        "to": json_values | st.just(str(uuid.uuid4())), "sdp": json_values,
        "candidate": json_values, "t": json_values, "token": json_values,
        "session": json_values, "rtt_ms": json_values}))
    return "text", json.dumps(message, allow_nan=True)


def _send(ws: ClientConnection, how: str, payload: bytes | str) -> None:
    if how == "raw":
        ws.send(payload, text=True)
    else:
        ws.send(payload)


def _answered(ws: ClientConnection, marker: float) -> int | None:
    """Read until the pong for ``marker``; the close code if the server closed instead."""
    try:
        ws.send(json.dumps({"type": "ping", "t": marker}))
        while True:
            message = json.loads(ws.recv(timeout=10))
            assert isinstance(message, dict) and message.get("type") in SERVER_TYPES, message
            if message["type"] == "pong" and message.get("t") == marker:
                return None
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return closed.rcvd.code


async def test_it_answers_malformed_frames_with_a_protocol_error_and_logs_no_exception(
    ctx: AppContext, db_url: str, tmp_path: Path
) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    with web_process(db_url, tmp_path / "web.log",
                     OPENVISIT_WS_OTHER_BURST="1000", OPENVISIT_WS_OTHER_PER_SECOND="1000") as web:
        seen: dict[str, int] = {}

        @settings(max_examples=120, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(batch=st.lists(frames(), min_size=1, max_size=4), joined=st.booleans())
        def check(batch: list[tuple[str, bytes | str]], joined: bool) -> None:
            with connect(web.ws_url, compression=None, max_size=None) as ws:
                if joined:
                    ws.send(json.dumps({"type": "hello", "token": Links.token(links.provider),
                                        "session": uuid.uuid4().hex[:16]}))
                    while json.loads(ws.recv(timeout=10))["type"] != "welcome":
                        pass
                for n, (how, payload) in enumerate(batch):
                    try:
                        _send(ws, how, payload)
                    except ConnectionClosed:
                        pass
                    code = _answered(ws, float(n))
                    seen[how] = seen.get(how, 0) + 1
                    if code is not None:
                        assert code in CLOSES, (code, how, payload[:80])
                        return

        await asyncio.to_thread(check)
        log = web.log()
    assert seen.get("binary") and seen.get("raw") and seen.get("text"), seen
    for marker in ("Traceback", "Exception in ASGI", "Error in ", "exception"):
        assert marker not in log, log[log.find(marker) - 500: log.find(marker) + 1500]
