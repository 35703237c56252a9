"""Password hashing does not stop the event loop (issue 10, item 8), measured against a real
``openvisit web`` process: ``/healthz`` answers as fast during 20 concurrent sign-ins (each a
~0.2 s argon2 verification) as when idle. Before the fix every verification ran on the event
loop, so a probe waited behind several of them (p95 of hundreds of milliseconds)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.peers.fixtures import free_port
from tests.portal.loopwatch import measure
from tests.support.backend import subprocess_env
from tests.support.procs import Proc, wait_for

pytestmark = [pytest.mark.slow]


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = subprocess_env(db_url, OPENVISIT_PUBLIC_URL=base, OPENVISIT_LOG_LEVEL="WARNING")
    proc = Proc(["web", "--port", str(port)], env=env, log=tmp_path / "web.log")
    try:
        wait_for(lambda: _up(f"{base}/healthz"), timeout=30, what="openvisit web", proc=proc)
        yield base
    finally:
        proc.stop()


def test_it_keeps_healthz_flat_during_20_concurrent_sign_ins(web: str) -> None:
    result = asyncio.run(measure(web, signins=20))
    print(result.summary())
    assert set(result.statuses) == {401}, result.statuses  # each one verified and refused
    assert len(result.during) >= 20, result.summary()
    # A verification on the loop holds every probe behind it for its whole ~0.2 s, so a
    # blocked loop puts p95 at 0.2 s or more. 0.1 s keeps that apart with room for a loaded
    # CI machine (p95 51 ms seen there, both passes side by side, nothing blocking).
    assert result.p(result.during, 0.95) < 0.1, result.summary()
    assert result.p(result.during, 0.5) < 0.05, result.summary()
