"""The bus on its backend (in-process on SQLite runs, Redis on PostgreSQL runs) and across
two OS processes through Redis."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from openvisit.bus import RESYNC, MemoryBus, RedisBus
from openvisit.context import AppContext
from tests.support.backend import REDIS_URL


async def test_it_delivers_to_every_subscriber_of_a_channel(ctx: AppContext) -> None:
    bus = ctx.bus
    async with bus.subscribe("visit.1") as a, bus.subscribe("visit.1", "visit.2") as b:
        await bus.publish("visit.1", {"kind": "joined", "participant": "p1"})
        await bus.publish("visit.2", {"kind": "admitted"})
        assert await a.get(timeout=3) == ("visit.1", {"kind": "joined", "participant": "p1"})
        assert [await b.get(timeout=3), await b.get(timeout=3)] == [
            ("visit.1", {"kind": "joined", "participant": "p1"}),
            ("visit.2", {"kind": "admitted"}),
        ]
        # Nothing of visit.2 reached ``a``: a marker published after it, on a's channel, is
        # the next thing ``a`` gets (the bus keeps one publisher's order).
        await bus.publish("visit.1", {"kind": "marker"})
        assert await a.get(timeout=3) == ("visit.1", {"kind": "marker"})


async def test_it_stops_delivering_after_the_subscription_ends(ctx: AppContext) -> None:
    async with ctx.bus.subscribe("gone") as sub:
        pass
    # A later subscriber of the channel is the barrier: once it has the message, the message
    # has been handed to every subscription of this process that was going to get it.
    async with ctx.bus.subscribe("gone") as witness:
        await ctx.bus.publish("gone", {"x": 1})
        assert await witness.get(timeout=3) == ("gone", {"x": 1})
    assert sub.pending() == 0


async def test_it_tells_a_slow_subscriber_to_resync_instead_of_growing() -> None:
    bus = MemoryBus()
    async with bus.subscribe("busy", maxsize=10) as sub:
        for i in range(50):
            await bus.publish("busy", {"n": i})
        assert await sub.get(timeout=1) == (RESYNC, {})
        await bus.publish("busy", {"n": "after"})
        assert await sub.get(timeout=1) == ("busy", {"n": "after"})


async def test_it_carries_messages_between_two_processes_through_redis() -> None:
    """A second OS process subscribes to 'ping' and answers each message on 'pong'."""
    script = textwrap.dedent(f"""
        import asyncio
        from openvisit.bus import RedisBus

        async def main():
            bus = RedisBus({REDIS_URL!r}, prefix="ovtest:")
            await bus.start()
            async with bus.subscribe("ping") as sub:
                await bus.publish("ready", {{}})
                for _ in range(3):
                    _channel, message = await sub.get(timeout=20)
                    await bus.publish("pong", {{"echo": message["n"] * 10}})
            await bus.close()

        asyncio.run(main())
    """)
    bus = RedisBus(REDIS_URL, prefix="ovtest:")
    await bus.start()
    try:
        async with bus.subscribe("pong", "ready") as sub:
            child = subprocess.Popen([sys.executable, "-c", script])
            try:
                assert (await sub.get(timeout=20))[0] == "ready"
                for n in (1, 2, 3):
                    await bus.publish("ping", {"n": n})
                answers = [(await sub.get(timeout=10))[1]["echo"] for _ in range(3)]
                assert answers == [10, 20, 30]
                assert child.wait(timeout=20) == 0
            finally:
                if child.poll() is None:
                    child.kill()
    finally:
        await bus.close()


async def test_it_reports_redis_unreachable_on_ping() -> None:
    bus = RedisBus("redis://127.0.0.1:1/0")
    await bus.start()
    try:
        with pytest.raises(Exception):  # noqa: B017 - any connection error is "not ready"
            await bus.ping()
    finally:
        await bus.close()
