"""kill -9 of a worker in the middle of a batch of 50 SMS over SMPP: after a restart every
patient got their confirmation exactly once, counted in the SMSC's own log.

The web role's SMPP receiver (here: in the test process) stays up while the worker dies, as
in production, so a message the SMSC took just before the kill is proven by its receipt.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from openvisit.context import AppContext
from openvisit.models import utcnow
from openvisit.notify.smpp.receiver import running_receiver
from tests.notify.conftest import PUBLIC_URL
from tests.notify.support import logs, make_appointment, make_site
from tests.peers.fixtures import Smsc
from tests.support.backend import subprocess_env
from tests.support.procs import Proc

BATCH = 50
SENDER = "+420700000009"
PATIENTS = [f"+4206013{i:05d}" for i in range(BATCH)]


def submits_by_patient(smsc: Smsc) -> dict[str, list[dict[str, Any]]]:
    wanted = {p.lstrip("+") for p in PATIENTS}
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for submit in smsc.submitted():
        if submit["destination_addr"] in wanted:
            grouped[submit["destination_addr"]].append(submit)
    return grouped


def part_numbers(submits: list[dict[str, Any]]) -> list[int]:
    """Which parts of a concatenated SMS were submitted (UDH IE 00: ref, total, seq)."""
    seqs = []
    for submit in submits:
        udh = submit["udh"]
        if not udh:
            seqs.append(1)
            continue
        raw = bytes.fromhex(udh[0]["hex"]) if isinstance(udh, list) else bytes.fromhex(udh["hex"])
        seqs.append(raw[-1])
    return sorted(seqs)


async def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str,
                   proc: Proc | None = None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"worker exited while waiting for {what}:\n{proc.tail()}")
        await asyncio.sleep(0.1)
    tail = proc.tail() if proc else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


async def test_it_sends_each_sms_exactly_once_across_a_kill_9(
    configure: Callable[..., AppContext], smsc: Smsc, db_url: str, tmp_path: Path,
) -> None:
    smpp = {"smpp_host": smsc.host, "smpp_port": smsc.port, "smpp_system_id": smsc.system_id,
            "smpp_password": smsc.password}
    app = configure(**smpp)
    # 300 a minute from one number: five a second, so the batch takes ~10 s to go out.
    site = await make_site(app, offsets=[], number=SENDER, number_provider="smpp",
                           rate_limit=300)
    start = utcnow() + timedelta(days=3)
    for patient in PATIENTS:
        await make_appointment(app, site, start_at=start, mobile=patient)
    env = subprocess_env(db_url, **{f"OPENVISIT_{k.upper()}": str(v) for k, v in smpp.items()},
                         OPENVISIT_PUBLIC_URL=PUBLIC_URL, OPENVISIT_JOB_LEASE_SECONDS="2",
                         OPENVISIT_JOB_POLL_SECONDS="0.1", OPENVISIT_JOB_BACKOFF_BASE_SECONDS="0.1",
                         OPENVISIT_SMPP_RECEIPT_WAIT_SECONDS="5")

    async def some_sent() -> bool:
        return len(submits_by_patient(smsc)) >= 12

    async def all_recorded() -> bool:
        return [m.status for m in await logs(app)].count("delivered") == BATCH

    async with running_receiver(app) as receiver:
        assert await asyncio.to_thread(receiver.bound.wait, 10)
        first = Proc(["worker"], env=env, log=tmp_path / "worker1.log")
        try:
            await wait_for(some_sent, timeout=60, what="the batch to start", proc=first)
            first.kill9()
        finally:
            first.stop()
        at_kill = len(submits_by_patient(smsc))
        assert at_kill < BATCH, "the batch finished before the kill; slow it down"
        second = Proc(["worker"], env=env, log=tmp_path / "worker2.log")
        try:
            await wait_for(all_recorded, timeout=120, what="every message delivered",
                           proc=second)
        finally:
            second.stop()

    grouped = submits_by_patient(smsc)
    assert sorted(grouped) == sorted(p.lstrip("+") for p in PATIENTS), "a message was lost"
    for patient, submits in grouped.items():
        total = len(submits)
        assert part_numbers(submits) == list(range(1, total + 1)), f"{patient} got a duplicate"
    assert {len(s) for s in grouped.values()} == {2}  # every confirmation: two linked parts
    statuses = [(m.status, m.provider) for m in await logs(app)]
    assert statuses == [("delivered", "smpp")] * BATCH
