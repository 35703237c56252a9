"""Socket limits and trusted proxies, against a real ``openvisit web`` process.

What an unauthenticated client can make the server hold: one message of at most
``ws_max_size`` bytes (a bigger one is refused from its header, so memory does not grow),
``ws_unauthenticated_per_address`` sockets per address, each for ``ws_hello_timeout_seconds``.
The address is the peer's, or X-Forwarded-For when the peer is a trusted proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from openvisit.context import AppContext
from tests.visits.support import Links, make_visit, seed_org
from tests.visits.webproc import Web, web_process

MIB = 1024 * 1024


async def _open(web: Web, *, forwarded_for: str | None = None,
                compression: str | None = None) -> ClientConnection:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    return await connect(web.ws_url, additional_headers=headers, compression=compression,
                         max_size=None, open_timeout=10)


async def _pong(ws: ClientConnection) -> bool:
    """True if the server still answers on ``ws`` (it answers ``ping`` before ``hello``)."""
    try:
        await ws.send(json.dumps({"type": "ping", "t": 1}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] == "pong":
                return True
    except ConnectionClosed:
        return False


async def _close_code(ws: ClientConnection, *, within: float = 5.0) -> int | None:
    """The close code the server sent on ``ws`` (waits up to ``within`` seconds)."""
    try:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        return None


async def _open_once_free(web: Web, *, timeout: float = 10.0) -> ClientConnection:
    """A socket the server answers, retrying while it refuses new ones as busy (1013)."""
    async with asyncio.timeout(timeout):
        while True:
            ws = await _open(web)
            if await _pong(ws):
                return ws
            await asyncio.sleep(0.05)


async def _hello(ws: ClientConnection, token: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "hello", "token": token, "session": uuid.uuid4().hex[:16]}))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] in ("welcome", "error"):
            return dict(message)


async def test_it_refuses_a_frame_over_ws_max_size_without_growing(
    db_url: str, tmp_path: Path
) -> None:
    with web_process(db_url, tmp_path / "web.log") as web:
        # Warm up every code path the frames take, so what is measured is the frames.
        for _ in range(3):
            ws = await _open(web)
            assert await _pong(ws)
            await ws.send("x" * 70_000)  # over the protocol's 64 KiB: a protocol error
            assert json.loads(await ws.recv())["code"] == "too_large"
            await ws.close()
        await asyncio.sleep(0.5)
        before = web.memory_kib()

        async def attack(compressed: bool) -> int | None:
            ws = await _open(web, compression="deflate" if compressed else None)
            payload = "a" * MIB if compressed else os.urandom(MIB // 2).hex()
            try:
                for _ in range(4):
                    await ws.send(payload)
            except ConnectionClosed:
                pass
            return await _close_code(ws)

        codes = await asyncio.gather(*(attack(compressed=n % 2 == 1) for n in range(10)))
        await asyncio.sleep(0.5)
        after = web.memory_kib()
        # Just over the limit (the payload is all in the server's hands when it closes, so
        # the close frame arrives before any reset): 1009 "message too big".
        ws = await _open(web)
        await ws.send("y" * (72 * 1024 + 1))
        just_over = await _close_code(ws)
        still = await _open(web)
        healthy = await _pong(still)
        await still.close()
    # Refused from the header: 40 MiB were sent in all, 20 MiB of it compressed to almost
    # nothing (a decompression bomb), and the server's resident set did not move by one of
    # those frames. (The client may see a reset instead of the 1009 close frame: the server
    # hangs up with the rest of the payload unread.)
    assert set(codes) <= {1009, None}, codes
    assert after["VmRSS"] - before["VmRSS"] < 1024, (before, after)
    assert after["VmHWM"] - before["VmHWM"] < 1024, (before, after)
    assert just_over == 1009 and healthy


async def test_it_refuses_the_unauthenticated_socket_over_the_per_address_cap(
    ctx: AppContext, db_url: str, tmp_path: Path
) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    with web_process(db_url, tmp_path / "web.log",
                     OPENVISIT_WS_UNAUTHENTICATED_PER_ADDRESS="3") as web:
        held = [await _open(web) for _ in range(3)]
        assert all([await _pong(ws) for ws in held])
        extra = await _open(web)
        # 1013 "try again later", with a reason; the three held sockets are untouched.
        try:
            await extra.recv()
            raise AssertionError("the fourth socket was not closed")
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1013
            assert "too many" in closed.rcvd.reason.lower()
        assert all([await _pong(ws) for ws in held])
        # A socket that says hello no longer counts: a new one fits again.
        assert (await _hello(held[0], Links.token(links.patient)))["type"] == "welcome"
        again = await _open(web)
        assert await _pong(again)
        # …and one that closes frees its place too.
        await held[1].close()
        # The slot is free once the server's side of that socket is gone: until then a new
        # socket is told 1013 "try again later", which is what a browser does.
        last = await _open_once_free(web)
        assert await _pong(last)
        for ws in (*held, again, last):
            await ws.close()


async def test_it_closes_a_silent_socket_after_the_hello_deadline(
    db_url: str, tmp_path: Path
) -> None:
    with web_process(db_url, tmp_path / "web.log", OPENVISIT_WS_HELLO_TIMEOUT_SECONDS="1") as web:
        silent = await _open(web)
        started = time.monotonic()
        code = await _close_code(silent, within=5)
        waited = time.monotonic() - started
        # Pings do not buy time: only hello does.
        chatty = await _open(web)
        started = time.monotonic()
        closed_at: float | None = None
        try:
            while time.monotonic() - started < 5:
                await chatty.send(json.dumps({"type": "ping"}))
                await asyncio.sleep(0.1)
        except ConnectionClosed as closed:
            closed_at = time.monotonic() - started
            assert closed.rcvd is not None and closed.rcvd.code == 4408
    assert code == 4408 and 0.9 <= waited < 2.5, (code, waited)
    assert closed_at is not None and closed_at < 2.5


@pytest.mark.parametrize("trusted", [True, False], ids=["loopback-trusted", "untrusted"])
async def test_it_believes_x_forwarded_for_only_from_a_trusted_proxy(
    db_url: str, tmp_path: Path, trusted: bool
) -> None:
    # The per-address socket cap counts what request.client reports: with loopback trusted it
    # is the X-Forwarded-For address, otherwise the peer's own (127.0.0.1) for everyone.
    allow = "127.0.0.1,::1" if trusted else "192.0.2.10"
    with web_process(db_url, tmp_path / "web.log", OPENVISIT_FORWARDED_ALLOW_IPS=allow,
                     OPENVISIT_WS_UNAUTHENTICATED_PER_ADDRESS="2") as web:
        first = [await _open(web, forwarded_for="203.0.113.5") for _ in range(2)]
        assert all([await _pong(ws) for ws in first])
        other = await _open(web, forwarded_for="203.0.113.6")
        other_ok = await _pong(other)
        # A client cannot pick its address by prepending to the header: the proxy appends the
        # peer it saw, and that last untrusted hop is the one believed.
        spoof = await _open(web, forwarded_for="203.0.113.7, 203.0.113.5")
        spoof_ok = await _pong(spoof)
        for ws in (*first, other, spoof):
            await ws.close()
    # Trusted: .5 is full, .6 is another client. Untrusted: all of them are 127.0.0.1 (full).
    assert (other_ok, spoof_ok) == ((True, False) if trusted else (False, False))
