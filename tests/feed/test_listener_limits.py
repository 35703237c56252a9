"""Bounded MLLP connections (issue 11, item 8): a whole-frame deadline, an idle timer that
noise does not reset, and a per-address connection cap that keeps the real sender served."""

from __future__ import annotations

import asyncio
import time

from openvisit.config import Settings
from openvisit.hl7v2 import encode_frame

from .support import read_ack, siu
from .test_listener import _acks, listening


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), seconds):
            pass
    except TimeoutError:
        return False
    return True


async def test_it_drops_a_one_byte_a_tick_sender_at_the_whole_frame_deadline(
    settings: Settings,
) -> None:
    # Every byte arrives well inside the read timeout; the frame as a whole must not take
    # longer than mllp_frame_timeout_seconds (before: each byte restarted the timer).
    async with listening(settings, mllp_frame_timeout_seconds=1.0) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.port)
        started = time.monotonic()
        closed_at = None
        for byte in b"\x0b" + siu(control_id="SLOW")[:60]:
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            if reader.at_eof() or await _closed_within(reader, 0.2):
                closed_at = time.monotonic() - started
                break
        writer.close()

        assert closed_at is not None, "the slow frame kept its connection for 12 seconds"
        assert 0.9 <= closed_at <= 2.0


async def test_it_does_not_let_noise_outside_frames_keep_a_connection_open(
    settings: Settings,
) -> None:
    async with listening(settings, mllp_idle_timeout_seconds=0.8) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.port)
        started, closed_at = time.monotonic(), None
        for _ in range(40):
            try:
                writer.write(b"\r\n noise \x1c\r")  # never a start block: no frame
                await writer.drain()
            except ConnectionError:
                break
            if await _closed_within(reader, 0.1):
                closed_at = time.monotonic() - started
                break
        writer.close()

        assert closed_at is not None and 0.7 <= closed_at <= 1.8


async def test_it_restarts_the_idle_timer_after_each_message(settings: Settings) -> None:
    async with listening(settings, mllp_idle_timeout_seconds=0.8) as run:
        reader, writer = await asyncio.open_connection("127.0.0.1", run.port)
        for n in range(3):
            await asyncio.sleep(0.5)
            writer.write(encode_frame(siu(control_id=f"KEEP-{n}", filler=f"K{n}")))
            await writer.drain()
            [ack] = await _acks(reader, 1)
            assert read_ack(ack).code == "AA"
        writer.close()


async def test_it_keeps_the_real_sender_served_while_one_address_holds_512_connections(
    settings: Settings,
) -> None:
    # The default total (512) from one address: before, the real sender was refused.
    async with listening(settings) as run:
        held = []
        for _ in range(512):
            held.append(await asyncio.open_connection("127.0.0.1", run.port))
        await run.until(lambda listener: listener.accepted == 512, what="512 connections taken")

        reader, writer = await asyncio.open_connection(
            "127.0.0.1", run.port, local_addr=("127.0.0.2", 0)
        )
        writer.write(encode_frame(siu(control_id="REAL-1")))
        await writer.drain()
        [ack] = await _acks(reader, 1, timeout=10)
        writer.close()
        still_open = sum(1 for r, _w in held if not r.at_eof())
        for _r, w in held:
            w.close()

        assert read_ack(ack).code == "AA"
        # One address keeps at most its cap; its oldest idle connections made room.
        assert still_open <= settings.mllp_max_connections_per_peer


async def test_it_makes_room_for_a_reconnecting_sender_by_closing_its_longest_idle_connection(
    settings: Settings,
) -> None:
    # An engine whose connections died silently (a firewall dropped them) reconnects: its own
    # stale connections give way, so it is never locked out by its own ghosts.
    async with listening(settings, mllp_max_connections_per_peer=3) as run:
        ghosts = [await asyncio.open_connection("127.0.0.1", run.port) for _ in range(3)]
        await run.until(lambda listener: listener.open_connections == 3, what="3 connections")
        reader, writer = await asyncio.open_connection("127.0.0.1", run.port)
        writer.write(encode_frame(siu(control_id="BACK-1")))
        await writer.drain()
        [ack] = await _acks(reader, 1)
        oldest_reader = ghosts[0][0]

        assert read_ack(ack).code == "AA"
        assert await _closed_within(oldest_reader, 2)
        assert not ghosts[2][1].transport.is_closing()
        for _r, w in [*ghosts, (reader, writer)]:
            w.close()


async def test_it_refuses_a_connection_past_the_cap_when_every_one_is_busy(
    settings: Settings,
) -> None:
    async with listening(settings, mllp_max_connections_per_peer=2) as run:
        busy = []
        for n in range(2):
            r, w = await asyncio.open_connection("127.0.0.1", run.port)
            w.write(b"\x0b" + siu(control_id=f"BUSY-{n}")[:30])  # mid-frame: busy
            await w.drain()
            busy.append((r, w))
        await run.until(lambda listener: listener.busy_connections == 2,
                        what="2 connections mid-frame")
        extra_r, extra_w = await asyncio.open_connection("127.0.0.1", run.port)

        assert await _closed_within(extra_r, 2)
        assert not any(w.transport.is_closing() for _r, w in busy)
        for _r, w in [*busy, (extra_r, extra_w)]:
            w.close()
