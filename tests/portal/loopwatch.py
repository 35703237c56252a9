"""Measure how a running OpenVisit web process answers ``/healthz`` while sign-ins hash.

Used by ``tests/portal/test_signin_event_loop.py`` (a real ``openvisit web`` process) and
``bench/signin_event_loop.py`` (prints the numbers, optionally for an older checkout). Every
sign-in uses its own name and a wrong password, so each costs one full argon2 verification
(the dummy hash for an unknown name costs the same as a real one) and none trips the
per-name throttle.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Latencies:
    idle: list[float]
    during: list[float]
    signin_seconds: float
    statuses: list[int]

    @staticmethod
    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def summary(self) -> str:
        def ms(x: float) -> str:
            return f"{x * 1000:.1f} ms"

        return (f"/healthz idle: p50 {ms(statistics.median(self.idle))}, p95 "
                f"{ms(self.p(self.idle, 0.95))}, max {ms(max(self.idle))} ({len(self.idle)} "
                f"probes) | during {len(self.statuses)} concurrent sign-ins: p50 "
                f"{ms(statistics.median(self.during))}, p95 {ms(self.p(self.during, 0.95))}, "
                f"max {ms(max(self.during))} ({len(self.during)} probes) | the sign-ins took "
                f"{self.signin_seconds:.2f} s, statuses {sorted(set(self.statuses))}")


async def _probe(http: httpx.AsyncClient) -> float:
    started = time.perf_counter()
    response = await http.get("/healthz")
    response.raise_for_status()
    return time.perf_counter() - started


async def measure(base_url: str, *, signins: int = 20, idle_probes: int = 60) -> Latencies:
    """Probe ``/healthz`` every 10 ms, idle and then during ``signins`` concurrent sign-ins."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as probe:
        for _ in range(5):
            await _probe(probe)  # warm the connection
        idle = []
        for _ in range(idle_probes):
            idle.append(await _probe(probe))
            await asyncio.sleep(0.01)
        clients = [httpx.AsyncClient(base_url=base_url, timeout=60) for _ in range(signins)]
        try:
            tokens = []
            for http in clients:
                page = await http.get("/portal/signin")
                found = re.search(r'name="signin_token" value="([^"]+)"', page.text)
                assert found, page.text[:200]
                tokens.append(found.group(1))
            done = asyncio.Event()
            during: list[float] = []

            async def watch() -> None:
                while not done.is_set():
                    during.append(await _probe(probe))
                    await asyncio.sleep(0.01)

            async def sign_in(n: int) -> int:
                response = await clients[n].post("/portal/signin", data={
                    "username": f"load-test-{n}", "password": "wrong-password-" + "x" * 8,
                    "signin_token": tokens[n], "next": "/portal"})
                return response.status_code

            watcher = asyncio.create_task(watch())
            started = time.perf_counter()
            statuses = await asyncio.gather(*(sign_in(n) for n in range(signins)))
            took = time.perf_counter() - started
            done.set()
            await watcher
        finally:
            for http in clients:
                await http.aclose()
    return Latencies(idle=idle, during=during, signin_seconds=took, statuses=list(statuses))
