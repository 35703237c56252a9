"""Does password hashing stop the event loop? ``/healthz`` latency during concurrent sign-ins.

Starts ``openvisit web`` on a fresh SQLite database, probes ``/healthz`` every 10 ms while idle,
then while N concurrent sign-ins (wrong passwords, one argon2 verification each) run, and
prints both distributions. The named peer is the same process idle: "flat" means the probe
during the sign-ins is about as fast as without them. ``--source DIR`` runs the OpenVisit code
in DIR instead (e.g. a checkout of an older commit, to see the before/after difference).

    .venv/bin/python bench/signin_event_loop.py [--signins 20] [--runs 3] [--source DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.portal.loopwatch import measure  # noqa: E402
from tests.support.backend import TEST_KEYS, TEST_SECRET  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_once(source: Path, signins: int) -> str:
    """One fresh database and web process (the per-address throttle starts at zero)."""
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
        env.update(OPENVISIT_ENVIRONMENT="test", PYTHONPATH=str(source),
                   OPENVISIT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/bench.db",
                   OPENVISIT_SECRET_KEY=TEST_SECRET,
                   OPENVISIT_FIELD_ENCRYPTION_KEYS=",".join(TEST_KEYS),
                   OPENVISIT_PUBLIC_URL=base, OPENVISIT_LOG_LEVEL="WARNING")
        with open(f"{tmp}/web.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "openvisit", "web", "--port",
                                     str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=tmp, start_new_session=True)
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                return asyncio.run(measure(base, signins=signins)).summary()
            finally:
                proc.terminate()
                proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signins", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--source", type=Path, default=REPO)
    args = parser.parse_args()
    print(f"source {args.source}")
    for run in range(args.runs):
        summary = _run_once(args.source, args.signins)
        print(f"run {run + 1} (load average {os.getloadavg()[0]:.1f}): {summary}")


if __name__ == "__main__":
    main()
