"""HL7 MLLP benchmark: sustained SIU messages/s and ACK latency, OpenVisit vs node-hl7-server.

Starts its own `openvisit mllp` process on a fresh PostgreSQL database (one endpoint, one
listed sender) and streams SIU^S12 bookings at it over several concurrent MLLP connections,
each with one message in flight (HL7 is request/response: the next message waits for the
ACK). Every message books a new appointment with an SMS number and an e-mail address, so each
ACK stands for a committed transaction (appointment, two encrypted contacts, the MSH-10 record
and the notification planning) - AA only after commit. Then the same stream goes to npm
`node-hl7-server` with a no-op handler (tests/peers/hl7_noop_server.mjs: parse + AA, no
storage) in the same run. Prints messages/s, p50/p99 ACK latency and the ratio OpenVisit/peer
for each connection count, then the storage floor: what PostgreSQL alone costs for the same
rows written by raw asyncpg (bench/hl7_floor.py).

    bash scripts/bootstrap-npm.sh          # once: node_modules under tests/peers
    .venv/bin/python bench/hl7_mllp.py [--connections 4,16] [--seconds 10] [--processes 1]

``--processes N`` runs N `openvisit mllp` processes on the same port (SO_REUSEPORT), the way
an operator scales the listener out; the default is the single process the target is about.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hl7_floor import cpu_seconds, postgres_cpu, storage_floor
from openvisit.context import AppContext
from openvisit.db import Database
from openvisit.hl7v2 import encode_frame
from openvisit.migrate import upgrade_async
from tests.feed.support import make_endpoint, siu
from tests.peers.fixtures import PEERS_DIR, free_port, port_open
from tests.support.backend import PG_ADMIN_URL, REDIS_URL, make_settings, subprocess_env

END = b"\x1c\r"


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies_ms: list[float]
    codes: dict[str, int]
    #: CPU seconds the server process(es) and PostgreSQL used in the measured window.
    server_cpu: float = 0.0
    db_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def frames(connection: int, *, sender: str, run: str):  # type: ignore[no-untyped-def]
    """Endless distinct S12 bookings for one connection: (control id, frame)."""
    template = encode_frame(siu(control_id="@CTRL@", filler="@FILLER@", sender=sender))
    i = 0
    while True:
        i += 1
        tag = f"{run}-{connection}-{i}".encode()
        yield b"B" + tag, template.replace(b"@CTRL@", b"B" + tag).replace(b"@FILLER@", b"F" + tag)


def msa(ack: bytes) -> tuple[str, bytes]:
    """MSA-1 and MSA-2 of an ACK frame."""
    at = ack.find(b"MSA|")
    if at < 0:
        return "??", b""
    fields = ack[at:].split(b"\r", 1)[0].rstrip(b"\x1c").split(b"|")
    return fields[1].decode(errors="replace"), fields[2] if len(fields) > 2 else b""


async def drive(
    name: str,
    port: int,
    *,
    connections: int,
    warmup: float,
    seconds: float,
    sender: str,
    reconnect: bool,
    pids: list[int],
) -> Result:
    """``connections`` clients, window 1 each; counts only ACKs inside the measured window.

    An ACK counts when its MSA-2 names the message just sent (stray ACKs are skipped and
    counted). ``reconnect`` opens a new connection per message.
    """
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + seconds
    latencies: list[float] = []
    codes: dict[str, int] = {}
    run = f"{os.getpid()}{'r' if reconnect else 'p'}{port}"

    async def client(n: int) -> None:
        source = frames(n, sender=sender, run=run)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                sent = loop.time()
                if sent >= stop:
                    return
                if reconnect:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                control_id, frame = next(source)
                writer.write(frame)
                while True:
                    code, acked = msa(await reader.readuntil(END))
                    if acked == control_id:
                        break
                    codes["stray"] = codes.get("stray", 0) + 1
                done = loop.time()
                if start <= sent and done <= stop:
                    latencies.append((done - sent) * 1000)
                    codes[code] = codes.get(code, 0) + 1
        finally:
            writer.close()

    async def account() -> tuple[float, float]:
        await asyncio.sleep(max(0.0, start - loop.time()))
        server, db = sum(map(cpu_seconds, pids)), postgres_cpu()
        await asyncio.sleep(max(0.0, stop - loop.time()))
        return sum(map(cpu_seconds, pids)) - server, postgres_cpu() - db

    accounting = asyncio.create_task(account())
    await asyncio.gather(*(client(n) for n in range(connections)))
    server_cpu, db_cpu = await accounting
    return Result(name, len(latencies), seconds, latencies, codes, server_cpu, db_cpu)


async def pg_database() -> str:
    import asyncpg

    name = f"openvisit_bench_{os.getpid()}"
    conn = await asyncpg.connect(PG_ADMIN_URL + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_ADMIN_URL.replace("postgresql://", "postgresql+asyncpg://") + "/" + name


async def drop_database(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def prepare(url: str, *, sender: str) -> None:
    db = Database(url)
    await upgrade_async(db)
    await db.dispose()
    ctx = AppContext.create(make_settings(url, redis_url=REDIS_URL))
    await ctx.start()
    try:
        await make_endpoint(ctx, senders=(sender,), sms=True)
    finally:
        await ctx.close()


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def report(result: Result) -> str:
    codes = ", ".join(f"{k}={v}" for k, v in sorted(result.codes.items()))
    per = 1000 / max(result.messages, 1)
    return (
        f"{result.name:<30} {result.rate:8.1f} msg/s   p50 {result.pct(0.50):6.2f} ms   "
        f"p99 {result.pct(0.99):7.2f} ms\n{'':<30} {result.messages} ACKs ({codes}); CPU per "
        f"message: server {result.server_cpu * per:.2f} ms, PostgreSQL {result.db_cpu * per:.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--connections", default="4,16", help="comma-separated connection counts to run"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument(
        "--peer-persistent",
        action="store_true",
        help="also drive node-hl7-server over persistent connections",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the raw-asyncpg floor")
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",") if c.strip()]
    sender = "EPIC^EPICADT"
    node = shutil.which("node")
    if node is None or not (PEERS_DIR / "node_modules" / "node-hl7-server").exists():
        raise SystemExit(
            "node and tests/peers/node_modules are needed: run `bash scripts/bootstrap-npm.sh`"
        )
    logs = Path(tempfile.mkdtemp(prefix="hl7-bench-"))
    url = await pg_database()
    procs: list[subprocess.Popen[bytes]] = []
    timing = {"warmup": args.warmup, "seconds": args.seconds, "sender": sender}
    ours: dict[int, tuple[Result, Result]] = {}
    theirs: dict[int, list[Result]] = {}
    floor: list[str] = []
    try:
        await prepare(url, sender=sender)
        port = free_port()
        env = subprocess_env(
            url,
            OPENVISIT_REDIS_URL=REDIS_URL,
            OPENVISIT_MLLP_REUSE_PORT=str(args.processes > 1).lower(),
        )
        for i in range(args.processes):
            log = logs / f"openvisit-mllp-{i}.log"
            proc = subprocess.Popen(
                [sys.executable, "-m", "openvisit", "mllp", "--port", str(port)],
                env=env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.append(proc)
            wait_port(port, proc, log, "openvisit mllp")
        label = "openvisit" + (f" x{args.processes}" if args.processes > 1 else "")
        pids = [p.pid for p in procs]
        for n in counts:
            persistent = await drive(
                f"{label} persistent", port, connections=n, reconnect=False, pids=pids, **timing
            )
            fresh = await drive(
                f"{label} new conn/msg", port, connections=n, reconnect=True, pids=pids, **timing
            )
            ours[n] = (persistent, fresh)
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
        procs.clear()

        peer_port = free_port()
        peer_log = logs / "node-hl7-server.log"
        peer = subprocess.Popen(
            [node, str(PEERS_DIR / "hl7_noop_server.mjs"), "--port", str(peer_port)],
            cwd=PEERS_DIR,
            stdout=peer_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(peer)
        wait_port(peer_port, peer, peer_log, "node-hl7-server")
        for n in counts:
            theirs[n] = [
                await drive(
                    "node-hl7-server new conn/msg",
                    peer_port,
                    connections=n,
                    reconnect=True,
                    pids=[peer.pid],
                    **timing,
                )
            ]
            if args.peer_persistent:
                theirs[n].append(
                    await drive(
                        "node-hl7-server persistent",
                        peer_port,
                        connections=n,
                        reconnect=False,
                        pids=[peer.pid],
                        **timing,
                    )
                )
        if not args.no_floor:
            floor = await storage_floor(url, batches=sorted({*counts, 1}))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
        await drop_database(url)
        if not args.keep:
            shutil.rmtree(logs, ignore_errors=True)
    print(
        f"window 1 per connection, {args.seconds:.0f} s measured after {args.warmup:.0f} s "
        f"warm-up; {os.cpu_count()} CPUs shared by client, server, DB; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    failures = []
    for n in counts:
        persistent, fresh = ours[n]
        peer_fresh = theirs[n][0]
        print(f"\n--- {n} connections")
        for result in (persistent, fresh, *theirs[n]):
            print(report(result))
        print(
            f"ratio openvisit/peer, both with a new connection per message: throughput "
            f"{fresh.rate / peer_fresh.rate:.2f}x, p50 latency "
            f"{fresh.pct(0.5) / peer_fresh.pct(0.5):.2f}x; openvisit persistent / peer: "
            f"{persistent.rate / peer_fresh.rate:.2f}x"
        )
        failures += [r for r in (persistent, fresh) if r.codes.keys() - {"AA"}]
    if floor:
        print("\n--- storage floor: the same rows per booking written by raw asyncpg, no HL7")
        print("\n".join(floor))
    if args.keep:
        print(f"logs: {logs}")
    for result in failures:
        raise SystemExit(
            f"{result.name}: answers other than AA ({result.codes}); --keep keeps the logs"
        )


if __name__ == "__main__":
    asyncio.run(main())
