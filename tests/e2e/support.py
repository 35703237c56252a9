"""Run ``drive_room.py`` inside a private network namespace and read its JSON result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.forward import unix_forwarders
from tests.peers.fixtures import netns_argv, netns_available, require_binary
from tests.support.backend import BACKEND, REDIS_URL

DRIVER = Path(__file__).resolve().parent / "drive_room.py"
#: Set to a directory (e.g. docs/screenshots) to keep the screenshots the run takes.
SCREENSHOTS_ENV = "OPENVISIT_E2E_SCREENSHOTS"


def screenshot_dir(default: Path) -> Path:
    """Where a test keeps its screenshots: ``$OPENVISIT_E2E_SCREENSHOTS`` when set (e.g.
    docs/screenshots, to refresh them), else ``default`` — a test run never rewrites
    tracked files on its own."""
    chosen = os.environ.get(SCREENSHOTS_ENV)
    return Path(chosen).resolve() if chosen else default


def run_driver(workdir: Path, scenarios: list[str], *, timeout: float = 240.0,
               **options: str) -> dict[str, Any]:
    """Start the driver under ``unshare -n``; fail with its output if it does not report."""
    require_binary("chromium", "chromium")
    require_binary("turnserver", "coturn")
    if not netns_available():
        pytest.fail("`unshare -n` does not work here (needs root / CAP_SYS_ADMIN)", pytrace=False)
    argv = [sys.executable, str(DRIVER), "--workdir", str(workdir),
            "--scenarios", ",".join(scenarios)]
    for name, value in options.items():
        if value:
            argv += [f"--{name.replace('_', '-')}", value]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
    proc = subprocess.run(netns_argv(argv), capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"driver failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-6000:]}", pytrace=False)
    results: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    for name, result in results.items():
        if "error" in result:
            logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                             for p in sorted(workdir.glob("*.log")))
            pytest.fail(f"scenario {name}: {result['error']}\n{result.get('trace', '')}\n"
                        f"{proc.stderr[-4000:]}\n{logs}", pytrace=False)
    return results


def run_on_backend(db_url: str, workdir: Path, scenarios: list[str], *, timeout: float = 240.0,
                   **options: str) -> dict[str, Any]:
    """:func:`run_driver` on this pass's backend. On the PostgreSQL + Redis pass the driver's
    network namespace reaches the test's PostgreSQL and Redis through Unix sockets forwarded
    to their TCP ports (inside, 127.0.0.1 is the namespace's own loopback), so its web
    processes and workers share the test's database and bus; on SQLite it uses its own file."""
    if BACKEND != "postgres":
        return run_driver(workdir, scenarios, timeout=timeout, **options)
    pg, redis = urlsplit(db_url), urlsplit(REDIS_URL)
    sockets = Path("/tmp") / f"ov-e2e-{workdir.parent.name[-12:]}"  # Unix paths ≤ 107 bytes
    routes = {
        sockets / f".s.PGSQL.{pg.port or 5432}": (pg.hostname or "127.0.0.1", pg.port or 5432),
        sockets / "redis.sock": (redis.hostname or "127.0.0.1", redis.port or 6379),
    }
    inside_db = f"{pg.scheme}://{pg.username or 'postgres'}@{pg.path}?host={sockets}"
    if pg.port and pg.port != 5432:
        inside_db += f"&port={pg.port}"
    inside_redis = f"unix://{sockets / 'redis.sock'}?db={redis.path.lstrip('/') or '0'}"
    with unix_forwarders(routes):
        return run_driver(workdir, scenarios, timeout=timeout, db_url=inside_db,
                          redis_url=inside_redis, **options)


def assert_decoding(frames: dict[str, Any], peers: int) -> None:
    """Each of ``peers`` remote peers: frames decoded, still increasing, a real picture."""
    assert len(frames) == peers, frames
    for peer, stats in frames.items():
        assert stats["frames_first"] > 0, (peer, stats)
        assert stats["frames_later"] > stats["frames_first"], (peer, stats)
        assert stats["video_width"] > 0, (peer, stats)
        assert stats["state"] == "connected", (peer, stats)
