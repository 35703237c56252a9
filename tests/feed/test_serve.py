"""``openvisit serve`` never runs without its MLLP listener (issue 11, item 9).

When the MLLP port cannot be bound, start-up fails with a message naming the address and the
ways out, before the HTTP port opens, so no load balancer or supervisor ever sees a "ready"
OpenVisit that silently drops the scheduling feed.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from openvisit.app import create_app
from openvisit.config import Settings
from openvisit.errors import ConfigurationError
from tests.peers.fixtures import free_port, port_open
from tests.support.backend import subprocess_env
from tests.support.procs import Proc

pytestmark = pytest.mark.peers


def _occupied() -> tuple[socket.socket, int]:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    return blocker, blocker.getsockname()[1]


async def test_it_fails_start_up_when_the_mllp_port_is_taken(settings: Settings) -> None:
    blocker, port = _occupied()
    app = create_app(settings.model_copy(update={"mllp_port": port}), roles=("mllp",))
    try:
        with pytest.raises(ConfigurationError) as caught:
            async with app.router.lifespan_context(app):
                pytest.fail("the app started without its MLLP listener")
    finally:
        blocker.close()

    assert f"127.0.0.1:{port}" in caught.value.message
    assert "--no-mllp" in caught.value.message


def test_it_exits_openvisit_serve_before_saying_ready(db_url: str, tmp_path: Path) -> None:
    blocker, mllp_port = _occupied()
    http_port = free_port()
    proc = Proc(
        ["serve", "--port", str(http_port), "--mllp-port", str(mllp_port)],
        env=subprocess_env(db_url),
        log=tmp_path / "serve.log",
    )
    ready = False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.popen.poll() is None:
            if port_open("127.0.0.1", http_port):
                ready = httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=5).is_success
                break
            time.sleep(0.1)
        assert not ready, "openvisit serve said ready without its MLLP listener"
        code = proc.popen.wait(timeout=30)
    finally:
        proc.stop()
        blocker.close()

    output = proc.log.read_text(errors="replace")
    assert code != 0
    assert f"127.0.0.1:{mllp_port}" in output and "MLLP listener" in output
