"""Presence fan-out benchmark: N simulated visit participants against one web process.

Starts ``openvisit web`` (SQLite + in-process bus by default: the embedded default; or
``--backend postgres`` for PostgreSQL + Redis), seeds visits of ``--per-visit`` seats (one
clinician, the rest patients), connects every clinician, then ramps the patients into the
lobby at ``--rate`` per second. It measures:

* join → the clinician's socket shows that patient "waiting" (presence fan-out on arrival);
* admit (HTTP, ``--events`` of them at 50/s once all N are connected) → both the clinician's
  and the patient's sockets show it;
* resident memory of the server per connected socket.

The named peer is a plain ``websockets`` echo server measured in the same run with the same
client: its round trip at the same pace, and its memory per connection. Target: 5,000
participants, fan-out p95 ≤ 100 ms.

    .venv/bin/python bench/presence.py [--participants 5000] [--per-visit 5] [--rate 250]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.backend import PG_ADMIN_URL, REDIS_URL, TEST_KEYS, TEST_SECRET  # noqa: E402

ECHO_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), ping_interval=None, max_queue=16):
        await asyncio.Future()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def seed(db_url: str, redis_url: str, *, visits: int, per_visit: int,
               public_url: str) -> list[dict[str, Any]]:
    """``visits`` ad-hoc visits with one clinician and ``per_visit - 1`` patient seats."""
    from openvisit.config import Settings
    from openvisit.context import AppContext
    from openvisit.models import Organisation
    from openvisit.visits import service

    settings = Settings(_env_file=None, environment="test", database_url=db_url,  # type: ignore[call-arg]
                        redis_url=redis_url, secret_key=TEST_SECRET, public_url=public_url,
                        field_encryption_keys=",".join(TEST_KEYS), auto_migrate=False)
    ctx = AppContext.create(settings)
    out: list[dict[str, Any]] = []
    try:
        async with ctx.transaction() as session:
            org = Organisation(slug=f"bench-{os.getpid()}", display_name="Bench")
            session.add(org)
            await session.flush()
        for start in range(0, visits, 50):
            async with ctx.transaction() as session:
                for _ in range(start, min(visits, start + 50)):
                    visit = await service.open_adhoc_visit(session, app=ctx,
                                                           organisation_id=org.id)
                    doc = await service.find_or_create_seat(session, visit=visit,
                                                            role="provider", ehr_user_id="P/1")
                    patients = [await service.find_or_create_seat(
                        session, visit=visit, role="patient", patient_ref=f"Patient/{n}")
                        for n in range(per_visit - 1)]
                    out.append({
                        "provider": (str(doc.id), service.link_for(ctx, doc).rsplit("/", 1)[1]),
                        "patients": [(str(p.id), service.link_for(ctx, p).rsplit("/", 1)[1])
                                     for p in patients],
                        "visit": str(visit.id),
                    })
    finally:
        await ctx.close()
    return out


class Clients:
    """Every simulated browser: sockets, and when each fact was first seen."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sockets: list[ClientConnection] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.waiting_seen: dict[str, float] = {}
        self.admitted_seen_by_doc: dict[str, float] = {}
        self.admitted_seen_by_self: dict[str, float] = {}
        self.echo_seen: dict[str, float] = {}
        self.errors = 0

    async def open(self, token: str | None, *, role: str, pid: str = "") -> ClientConnection:
        ws = await connect(self.url, open_timeout=60, ping_interval=None, max_size=2**22)
        self.sockets.append(ws)
        self.tasks.append(asyncio.create_task(self._read(ws, role, pid)))
        if token is not None:
            await ws.send(json.dumps({"type": "hello", "token": token,
                                      "session": f"bench{os.urandom(5).hex()}"}))
        return ws

    async def _read(self, ws: ClientConnection, role: str, pid: str) -> None:
        try:
            async for frame in ws:
                now = time.perf_counter()
                if role == "echo":
                    self.echo_seen[str(frame)] = now
                    continue
                message = json.loads(frame)
                if message.get("type") == "error":
                    self.errors += 1
                if message.get("type") != "state":
                    continue
                if role == "provider":
                    for seat in message.get("roster", ()):
                        if seat["state"] == "waiting":
                            self.waiting_seen.setdefault(seat["id"], now)
                        elif seat["state"] == "admitted" and seat["role"] == "patient":
                            self.admitted_seen_by_doc.setdefault(seat["id"], now)
                elif message["you"]["state"] == "admitted":
                    self.admitted_seen_by_self.setdefault(pid, now)
        except Exception:  # a closed socket ends its reader
            return

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def paced(items: list[Any], rate: float, action: Any, *, limit: int = 200) -> None:
    """Run ``action(item)`` for each item, started at ``rate`` per second."""
    gate = asyncio.Semaphore(limit)
    started = time.perf_counter()

    async def one(item: Any) -> None:
        async with gate:
            await action(item)

    tasks = []
    for i, item in enumerate(items):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(item)))
    await asyncio.gather(*tasks)


async def bench_openvisit(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if args.backend == "postgres":
        import asyncpg

        name = f"openvisit_bench_{os.getpid()}"
        admin = await asyncpg.connect(PG_ADMIN_URL + "/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        db_url = PG_ADMIN_URL.replace("postgresql://", "postgresql+asyncpg://") + "/" + name
        redis_url = REDIS_URL
    else:
        db_url, redis_url = f"sqlite+aiosqlite:///{workdir / 'openvisit.db'}", ""
    from openvisit.db import Database
    from openvisit.migrate import upgrade_async

    db = Database(db_url)
    await upgrade_async(db)
    await db.dispose()
    visits = args.participants // args.per_visit
    seeded = await seed(db_url, redis_url, visits=visits, per_visit=args.per_visit,
                        public_url=base)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
    env.update(OPENVISIT_ENVIRONMENT="test", OPENVISIT_DATABASE_URL=db_url,
               OPENVISIT_REDIS_URL=redis_url, OPENVISIT_SECRET_KEY=TEST_SECRET,
               OPENVISIT_FIELD_ENCRYPTION_KEYS=",".join(TEST_KEYS), OPENVISIT_LOG_LEVEL="WARNING",
               OPENVISIT_AUTO_MIGRATE="false", OPENVISIT_PUBLIC_URL=base, PYTHONPATH=str(REPO))
    log = (workdir / "web.log").open("wb")
    if args.gc_threshold:
        # An operator's knob, not a code change: fewer, later garbage collections in the
        # server (its heap holds thousands of long-lived sockets; full collections pause it).
        site = workdir / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(
            f"import gc\ngc.set_threshold({args.gc_threshold})\n")
        env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    server = subprocess.Popen([sys.executable, *profile, "-m", "openvisit", "web", "--port",
                               str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    if args.pid_file:
        Path(args.pid_file).write_text(str(server.pid))
    try:
        wait_port(port)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await http.get("/healthz")
            before = rss(server.pid)
            clients = Clients(f"ws://127.0.0.1:{port}/ws/visit")
            providers = [v["provider"] for v in seeded]
            await paced(providers, args.rate,
                        lambda p: clients.open(p[1], role="provider", pid=p[0]))
            patients = [p for v in seeded for p in v["patients"]]
            sent: dict[str, float] = {}

            async def join(p: tuple[str, str]) -> None:
                sent[p[0]] = time.perf_counter()
                await clients.open(p[1], role="patient", pid=p[0])

            await paced(patients, args.rate, join)
            ramp_end = time.perf_counter()
            # Let the server drain any backlog first: the admits then measure fan-out with
            # every socket connected and nothing else queued.
            while len(clients.waiting_seen) < len(sent) and time.perf_counter() - ramp_end < 180:
                await asyncio.sleep(0.5)
            drained_s = time.perf_counter() - ramp_end
            await asyncio.sleep(2)
            connected_rss = rss(server.pid)
            join_ms = [(clients.waiting_seen[pid] - t) * 1000 for pid, t in sent.items()
                       if pid in clients.waiting_seen]
            # Steady state: admit a sample of patients, each in a different visit.
            sample = random.sample(seeded, min(args.events, len(seeded)))
            admitted: dict[str, float] = {}
            failed: list[int] = []
            answered: dict[str, float] = {}

            async def admit(v: dict[str, Any]) -> None:
                pid = v["patients"][0][0]
                admitted[pid] = time.perf_counter()
                r = await http.post(f"/api/visits/{v['visit']}/participants/{pid}/admit",
                                    headers={"Authorization": f"Bearer {v['provider'][1]}"})
                if r.status_code != 200:
                    failed.append(r.status_code)
                    del admitted[pid]
                else:
                    answered[pid] = time.perf_counter()

            await paced(sample, args.event_rate, admit, limit=50)
            await asyncio.sleep(2)
            seen = {pid: max(clients.admitted_seen_by_doc.get(pid, float("inf")),
                             clients.admitted_seen_by_self.get(pid, float("inf")))
                    for pid in admitted}
            admit_ms = [(seen[pid] - t) * 1000 for pid, t in admitted.items()]
            http_ms = [(answered[pid] - t) * 1000 for pid, t in admitted.items()]
            # After the commit: the HTTP answer and the socket messages leave the server at
            # about the same time, so "seen − answered" is the fan-out proper (≥ 0 or noise).
            fanout_ms = [max(0.0, (seen[pid] - answered[pid]) * 1000) for pid in admitted]
            await clients.close()
        return {"join_ms": join_ms, "admit_ms": admit_ms, "http_ms": http_ms,
                "fanout_ms": fanout_ms, "joined": len(join_ms),
                "expected": len(sent), "sockets": len(clients.sockets),
                "rss_per_conn": (connected_rss - before) / max(1, len(clients.sockets)),
                "rss_total": connected_rss, "errors": clients.errors, "admit_failed": len(failed),
                "drained_s": drained_s}
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


async def bench_echo(args: argparse.Namespace, n: int) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(port)])
    try:
        wait_port(port)
        await asyncio.sleep(0.3)
        before = rss(server.pid)
        clients = Clients(f"ws://127.0.0.1:{port}/")
        sockets: list[ClientConnection] = []

        async def open_one(_: int) -> None:
            sockets.append(await clients.open(None, role="echo"))

        await paced(list(range(n)), args.echo_rate, open_one)
        await asyncio.sleep(3)
        connected_rss = rss(server.pid)
        sent: dict[str, float] = {}

        async def ping(i: int) -> None:
            key = f"m{i}"
            sent[key] = time.perf_counter()
            await random.choice(sockets).send(key)

        await paced(list(range(args.events)), args.event_rate, ping)
        await asyncio.sleep(1)
        rtt = [(clients.echo_seen[k] - t) * 1000 for k, t in sent.items() if k in clients.echo_seen]
        await clients.close()
        return {"rtt_ms": rtt, "rss_per_conn": (connected_rss - before) / max(1, len(sockets))}
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=5000)
    parser.add_argument("--per-visit", type=int, default=5)
    parser.add_argument("--rate", type=float, default=250.0, help="connections per second")
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--echo-rate", type=float, default=200.0,
                        help="connections per second to the echo server")
    parser.add_argument("--event-rate", type=float, default=20.0, help="admits per second")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--keep-log", default="", help="copy the server log here")
    parser.add_argument("--profile", default="", help="run the server under cProfile, to here")
    parser.add_argument("--gc-threshold", default="",
                        help="e.g. '50000, 20, 100': gc.set_threshold in the server")
    parser.add_argument("--pid-file", default="", help="write the server's pid here")
    args = parser.parse_args()
    from openvisit.logs import configure_logging

    configure_logging(level="WARNING")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.participants
                                                               + 1024)), hard))
    with tempfile.TemporaryDirectory(prefix="ov-bench-") as tmp:
        try:
            ov = asyncio.run(bench_openvisit(args, Path(tmp)))
        finally:
            if args.keep_log:
                Path(args.keep_log).write_bytes((Path(tmp) / "web.log").read_bytes())
    echo = asyncio.run(bench_echo(args, ov["sockets"]))
    n = ov["sockets"]
    print(f"\nPresence fan-out: {n} sockets ({n // args.per_visit} visits of {args.per_visit}) "
          f"on one `openvisit web` ({args.backend}), ramp {args.rate:.0f}/s")
    print(f"  join  → clinician sees 'waiting'  p50 {pct(ov['join_ms'], .5):7.1f} ms   "
          f"p95 {pct(ov['join_ms'], .95):7.1f} ms   ({ov['joined']}/{ov['expected']} seen; "
          f"backlog drained {ov['drained_s']:.1f} s after the ramp)")
    print(f"  admit → both sockets see it       p50 {pct(ov['admit_ms'], .5):7.1f} ms   "
          f"p95 {pct(ov['admit_ms'], .95):7.1f} ms   ({len(ov['admit_ms'])} admits at "
          f"{args.event_rate:.0f}/s, all {n} connected; {ov['admit_failed']} refused)")
    print(f"    of which the admit request      p50 {pct(ov['http_ms'], .5):7.1f} ms   "
          f"p95 {pct(ov['http_ms'], .95):7.1f} ms   (HTTP answer: transaction committed)")
    print(f"    and fan-out after it            p50 {pct(ov['fanout_ms'], .5):7.1f} ms   "
          f"p95 {pct(ov['fanout_ms'], .95):7.1f} ms   (answer → both sockets)")
    print(f"  memory per connection             {ov['rss_per_conn'] / 1024:7.1f} KiB "
          f"(server RSS {ov['rss_total'] / 2**20:.0f} MiB; {ov['errors']} error messages)")
    print(f"Peer: plain `websockets` echo server, same client, {n} connections")
    print(f"  echo round trip                   p50 {pct(echo['rtt_ms'], .5):7.1f} ms   "
          f"p95 {pct(echo['rtt_ms'], .95):7.1f} ms   "
          f"({len(echo['rtt_ms'])} at {args.event_rate:.0f}/s)")
    print(f"  memory per connection             {echo['rss_per_conn'] / 1024:7.1f} KiB")
    end_to_end, fanout = pct(ov["admit_ms"], .95), pct(ov["fanout_ms"], .95)
    echo95 = max(0.001, pct(echo["rtt_ms"], .95))
    memory = ov["rss_per_conn"] / max(1.0, echo["rss_per_conn"])
    print(f"Ratios to the echo server: admit end-to-end p95 {end_to_end / echo95:.1f}x, fan-out "
          f"p95 {fanout / echo95:.1f}x, memory {memory:.1f}x")
    print(f"Target p95 ≤ 100 ms: end-to-end {'met' if end_to_end <= 100 else 'NOT met'} "
          f"({end_to_end:.0f} ms), fan-out after commit {'met' if fanout <= 100 else 'NOT met'} "
          f"({fanout:.0f} ms)")


if __name__ == "__main__":
    main()
