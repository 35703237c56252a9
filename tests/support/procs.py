"""Start OpenVisit processes for tests and stop them for sure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


class Proc:
    """An OpenVisit subprocess with its output in a file."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "openvisit", *args],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill9(self) -> None:
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._out.close()  # nothing writes to it any more (stop() after this is a no-op)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._out.close()

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def wait_for(
    predicate: Callable[[], bool], *, timeout: float, what: str, proc: Proc | None = None
) -> None:
    """Poll ``predicate`` until true; fail with ``what`` (and the process log) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"process exited while waiting for {what}:\n{proc.tail()}")
        time.sleep(0.05)
    detail = f"\n{proc.tail()}" if proc is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
