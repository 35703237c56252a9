"""``POST /hl7/siu`` reads its body as a stream with a cap (issue 11, item 8).

Against a real ``openvisit web`` process: a 600 MiB chunked body (no Content-Length, so
nothing can be refused up front) must be cut off at the cap, and the server's resident
memory must not grow with what the client keeps sending.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from openvisit.context import AppContext
from tests.peers.fixtures import free_port, port_open
from tests.support.backend import subprocess_env
from tests.support.procs import Proc, wait_for

from .support import make_endpoint

MIB = 1 << 20

pytestmark = pytest.mark.peers


def _post_chunked(port: int, *, total: int, chunk: int = MIB) -> tuple[bytes, int]:
    """Send a chunked POST of ``total`` bytes until the server answers or hangs up; return
    the start of its answer and how many body bytes went out."""
    head = (
        f"POST /hl7/siu?endpoint={uuid.uuid4()} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/hl7-v2\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = f"{chunk:x}\r\n".encode() + b"A" * chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            while sent < total:
                sock.sendall(piece)
                sent += chunk
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading and closed: what we want
        sock.settimeout(10)
        answer = b""
        try:
            while len(answer) < 4096 and b"\r\n\r\n" not in answer:  # the head is enough
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except (TimeoutError, ConnectionResetError):
            pass
    return answer, sent


async def test_it_caps_a_chunked_body_without_buffering_it(
    ctx: AppContext, db_url: str, tmp_path: Path
) -> None:
    await make_endpoint(ctx)
    port = free_port()
    web = Proc(["web", "--port", str(port)], env=subprocess_env(db_url), log=tmp_path / "web.log")
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout=60, what="openvisit web", proc=web)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        server = psutil.Process(web.pid)
        baseline = server.memory_info().rss
        peak = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], server.memory_info().rss)
                except psutil.Error:
                    return
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            answer, sent = _post_chunked(port, total=600 * MIB)
        finally:
            done.set()
            sampler.join(timeout=5)
        elapsed = time.monotonic() - started
    finally:
        web.stop()

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    grown = (peak[0] - baseline) / MIB
    # The cap is 2 MiB (twice the MLLP frame limit); socket buffers and the answer add a few.
    assert grown < 40, f"resident memory grew by {grown:.0f} MiB while {sent / MIB:.0f} MiB came"
    assert sent < 600 * MIB or elapsed < 60
