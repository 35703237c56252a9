"""Does a request hold the database while it waits on the network? Ask the SIU feed.

The probe runs the real MLLP listener (``python -m openvisit mllp``, another process on the
same database) and, while a slow request is waiting on an in-process fake EHR, sends it SIU
bookings over MLLP and times each ACK. On SQLite a request that kept a write transaction
open (``BEGIN IMMEDIATE``) across its network calls makes every booking wait for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from openvisit.context import AppContext
from tests.feed.support import exchange, make_endpoint, read_ack, siu, start_listener

T = TypeVar("T")
SENDER = "EPIC^EPICADT"


@dataclass(frozen=True)
class Probe:
    """The ACK codes and their round-trip times (ms) while the slow request was waiting."""

    codes: list[str]
    ms: list[float]
    #: Whether the slow request was still waiting when the last ACK came back.
    overlapped: bool


def assert_unblocked(probe: Probe, *, slow_seconds: float, what: str) -> None:
    """The listener answered while the slow request waited: every ACK AA, the request still
    waiting after the last one, the typical round trip under 100 ms (issue 11 item 17) and
    none near the length of the call.

    A held write lock makes the first ACK wait for the whole call (1.6–1.8 s measured before
    the fix), so ``overlapped`` and the 25 % bound are what prove the lock free; the median,
    not the maximum, is held to 100 ms because on a loaded 2-core machine (both test passes
    at once) a single SQLite commit's fsync was seen to take 116–329 ms.
    """
    assert probe.overlapped, f"the {what} was no longer waiting on the EHR"
    assert probe.codes == ["AA"] * len(probe.codes)
    ordered = sorted(probe.ms)
    assert ordered[len(ordered) // 2] < 100, f"ACK round trips {probe.ms} ms during {what}"
    assert ordered[-1] < slow_seconds * 1000 / 4, f"ACK round trips {probe.ms} ms during {what}"


def _send(port: int, n: int, prefix: str) -> tuple[str, float]:
    started = time.perf_counter()
    raw = exchange(port, siu(control_id=f"{prefix}-{n}", filler=f"{prefix}{n}", csn=f"9{n}",
                             sender=SENDER), timeout=10)
    return read_ack(raw).code, (time.perf_counter() - started) * 1000


async def acks_during(ctx: AppContext, db_url: str, tmp: Path, slow: Awaitable[T], *,
                      messages: int = 3, settle: float = 0.4) -> tuple[T, Probe]:
    """Run ``slow`` and, once it is waiting on the network, send ``messages`` SIU bookings.

    Returns what ``slow`` returned and the :class:`Probe`.
    """
    await make_endpoint(ctx, senders=(SENDER,), slug="probe-feed",
                        fhir_base="https://probe-ehr.example.org/fhir/r4")
    listener = start_listener(db_url, tmp, name="probe-mllp")
    try:
        # Warm the listener (imports, first connection) before anything is measured.
        for n in range(2):
            code, _ms = await asyncio.to_thread(_send, listener.port, n, "WARM")
            assert code == "AA", code
        task = asyncio.ensure_future(slow)
        await asyncio.sleep(settle)
        assert not task.done(), "the slow request finished before the probe started"
        codes, times = [], []
        for n in range(messages):
            code, ms = await asyncio.to_thread(_send, listener.port, n, "DURING")
            codes.append(code)
            times.append(ms)
        overlapped = not task.done()
        return await task, Probe(codes=codes, ms=times, overlapped=overlapped)
    finally:
        listener.stop()
