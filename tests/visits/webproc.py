"""A real ``openvisit web`` process for socket tests: its address, its log, its memory."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.backend import subprocess_env
from tests.support.procs import Proc, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Web:
    proc: Proc
    host: str

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}/ws/visit"

    def memory_kib(self) -> dict[str, int]:
        """``VmRSS`` and ``VmHWM`` (peak resident set) of the process, in KiB."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
        return out

    def log(self) -> str:
        return self.proc.log.read_text(errors="replace")


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def web_process(db_url: str, log: Path, **env: str) -> Iterator[Web]:
    """``openvisit web`` on a free loopback port with ``env`` added; stopped by pid after."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc(["web", "--host", "127.0.0.1", "--port", str(port)],
                env=subprocess_env(db_url, OPENVISIT_PUBLIC_URL=base, **env), log=log)
    try:
        wait_for(lambda: _healthy(base), timeout=60, what="openvisit web", proc=proc)
        yield Web(proc, f"127.0.0.1:{port}")
    finally:
        proc.stop()
