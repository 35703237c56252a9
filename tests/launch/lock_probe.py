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
