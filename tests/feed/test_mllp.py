"""The real listener (``python -m openvisit mllp``) against python-hl7's ``mllp_send``."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from openvisit.context import AppContext
from openvisit.hl7v2 import encode_frame
from openvisit.models import Contact, InboundMessage, Job
from tests.support.backend import BACKEND

from .support import (
    FHIR_CONVERTER_SENDER,
    MLLP_SEND,
    SAMPLES,
    acks_in,
    appointments,
    count,
    exchange,
    frames_received,
    make_endpoint,
    mllp_send,
    read_ack,
    siu,
    start_listener,
    start_listener_logging_frames,
    write_message,
)

pytestmark = pytest.mark.peers

# sample, ACK code, appointment status afterwards (all samples name one appointment)
WALK = [
    ("SIU-S12-01.hl7", "AA", "booked"),
    ("SIU-S13-01.hl7", "AA", "booked"),
    ("SIU-S14-01.hl7", "AA", "booked"),
    ("SIU-S12_1.hl7", "AR", "booked"),  # sent by ADTApp: not a listed sender
    ("SIU-S26-01.hl7", "AA", "noshow"),
    ("SIU-S16-01.hl7", "AA", "cancelled"),  # S16 (discontinued): the rest of it is off
    ("SIU-S15-01.hl7", "AA", "cancelled"),
    ("SIU-S17-01.hl7", "AA", "cancelled"),
]


async def test_it_acknowledges_every_public_sample_sent_with_mllp_send(
    ctx: AppContext, db_url: str, tmp_path: Path
) -> None:
    endpoint = await make_endpoint(ctx)
    listener = start_listener(db_url, tmp_path)
    try:
        for name, code, status in WALK:
            [ack] = await asyncio.to_thread(mllp_send, listener.port, SAMPLES / name)
            assert ack.code == code, (name, ack.text)
            assert ack.acked_id == {"SIU-S12_1.hl7": "MSG00001"}.get(name, "MSG000" + name[5:7])
            if code != "AA":
                assert ack.has_err and ack.text
            [appointment] = await appointments(ctx)
            assert appointment.status == status, name
    finally:
        listener.stop()
    assert appointment.endpoint_id == endpoint.id
    assert (appointment.ehr_appointment_id, appointment.department) == ("36996", "055")
    assert appointment.provider_ehr_id == "1210"
    assert await count(ctx, InboundMessage) == 7
    log = listener.proc.log.read_text()
    assert "hl7_message" in log and "PATID1234" not in log and "EVERYMAN" not in log


async def test_it_cancels_a_booking_with_s15(ctx: AppContext, db_url: str, tmp_path: Path) -> None:
    await make_endpoint(ctx)
    both = tmp_path / "book-then-cancel.hl7"
    both.write_bytes(
        (SAMPLES / "SIU-S12-01.hl7").read_bytes()
        + b"\n"
        + (SAMPLES / "SIU-S15-01.hl7").read_bytes()
    )
    listener = start_listener(db_url, tmp_path)
    try:
        acks = await asyncio.to_thread(mllp_send, listener.port, both)
    finally:
        listener.stop()

    assert [(a.code, a.acked_id) for a in acks] == [("AA", "MSG00012"), ("AA", "MSG00015")]
    [appointment] = await appointments(ctx)
    assert appointment.status == "cancelled"


async def test_it_answers_a_resend_with_the_same_ack_and_changes_nothing(
    ctx: AppContext, db_url: str, tmp_path: Path
) -> None:
    await make_endpoint(ctx, senders=("EPIC^EPICADT",), sms=True)
    first = write_message(tmp_path, "first.hl7", siu(control_id="RESEND-1"))
    listener = start_listener(db_url, tmp_path)
    try:
        [ack] = await asyncio.to_thread(mllp_send, listener.port, first)
        [booked] = await appointments(ctx)
        jobs, contacts = await count(ctx, Job), await count(ctx, Contact)
        changed = write_message(
            tmp_path,
            "changed.hl7",
            siu(
                control_id="RESEND-1",
                start="20300401093000",
                end="20300401100000",
                phone="(202)555-0199",
            ),
        )
        again = await asyncio.to_thread(mllp_send, listener.port, changed)
        twice = await asyncio.to_thread(mllp_send, listener.port, first)
    finally:
        listener.stop()

    assert ack.code == "AA"
    assert [a.raw for a in again + twice] == [ack.raw, ack.raw]
    [after] = await appointments(ctx)
    assert (after.start_at, after.updated_at) == (booked.start_at, booked.updated_at)
    assert (await count(ctx, Job), await count(ctx, Contact)) == (jobs, contacts)
    assert jobs > 0  # the booking planned messages; the resends planned none
    assert await count(ctx, InboundMessage) == 1


def _send_raw(port: int, data: bytes, *, close_with_reset: bool = False) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if close_with_reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(data)


async def test_it_keeps_serving_after_malformed_frames_garbage_and_strangers(
    ctx: AppContext, db_url: str, tmp_path: Path
) -> None:
    await make_endpoint(ctx, senders=("EPIC^EPICADT", FHIR_CONVERTER_SENDER))
    no_sch = write_message(
        tmp_path, "no-sch.hl7", siu(control_id="BAD-1").replace(b"SCH|", b"ZZZ|")
    )
    stranger = write_message(
        tmp_path, "stranger.hl7", siu(control_id="WHO-1", sender="NOBODY^NOWHERE")
    )
    good = write_message(tmp_path, "good.hl7", siu(control_id="GOOD-1"))
    s18 = tmp_path / "s18.hl7"  # an SIU event OpenVisit does not take
    s18.write_bytes((SAMPLES / "SIU-S16-01.hl7").read_bytes().replace(b"S16", b"S18"))
    listener = start_listener(db_url, tmp_path)
    try:
        [malformed] = await asyncio.to_thread(mllp_send, listener.port, no_sch)
        [s16] = await asyncio.to_thread(mllp_send, listener.port, s18)
        [unknown] = await asyncio.to_thread(mllp_send, listener.port, stranger)
        headless = read_ack(exchange(listener.port, b"MSH|^~"))
        # Garbage, a half frame and a client that hangs up mid-frame, then a reset.
        _send_raw(listener.port, b"\x00\xffGET / HTTP/1.1\r\n\r\n" + b"\x0bMSH|^~\\&|EPIC")
        _send_raw(listener.port, b"\x0b" + siu(control_id="HALF")[:40], close_with_reset=True)
        _send_raw(listener.port, b"\x1c\r\x1c\r\x0b\x1c\r")
        [ok] = await asyncio.to_thread(mllp_send, listener.port, good)
        assert listener.proc.popen.poll() is None
    finally:
        listener.stop()

    assert (malformed.code, malformed.acked_id, malformed.has_err) == ("AE", "BAD-1", True)
    assert "SCH" in malformed.text
    assert (s16.code, s16.acked_id) == ("AR", "MSG00016")
    assert "S18" in s16.text
    assert (unknown.code, unknown.acked_id) == ("AR", "WHO-1")
    assert "unknown sender" in unknown.text
    assert (headless.code, headless.has_err) == ("AR", True)
    assert (ok.code, ok.acked_id) == ("AA", "GOOD-1")
    assert [a.ehr_appointment_id for a in await appointments(ctx)] == ["4000123456"]


async def _wait_until(predicate, *, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_it_applies_once_when_killed_between_receive_and_ack(
    ctx: AppContext, db_url: str, tmp_path: Path
) -> None:
    await make_endpoint(ctx, senders=("EPIC^EPICADT",))
    message = write_message(tmp_path, "m.hl7", siu(control_id="CRASH-1"))
    listener = start_listener_logging_frames(db_url, tmp_path)
    # Hold the appointment table (PostgreSQL) / the write lock (SQLite): the listener receives
    # the message, starts its transaction and waits there, before commit and before the ACK.
    async with ctx.db.engine.connect() as blocker:
        await blocker.begin()
        if BACKEND == "postgres":
            await blocker.execute(text("LOCK TABLE appointment IN EXCLUSIVE MODE"))
        else:
            await blocker.execute(text("SELECT 1"))
        sender = subprocess.Popen(
            [str(MLLP_SEND), "--loose", "-p", str(listener.port), "127.0.0.1", "-f", str(message)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if BACKEND == "postgres":

            async def waiting() -> bool:
                async with ctx.db.engine.connect() as probe:
                    found = await probe.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query ILIKE '%appointment%'"
                        )
                    )
                return bool(found)

            await _wait_until(waiting, timeout=15, what="the listener to wait on the lock")
        else:
            await frames_received(listener, 1)  # past the socket, before its commit
        listener.proc.kill9()
        out, _ = sender.communicate(timeout=15)
        await blocker.rollback()
    assert acks_in(out) == []  # the sender never heard back: it must resend
    assert await appointments(ctx) == []

    restarted = start_listener(db_url, tmp_path, name="mllp-restarted")
    try:
        [ack] = await asyncio.to_thread(mllp_send, restarted.port, message)
        [again] = await asyncio.to_thread(mllp_send, restarted.port, message)
    finally:
        restarted.stop()
    assert (ack.code, ack.acked_id) == ("AA", "CRASH-1")
    assert again.raw == ack.raw
    assert len(await appointments(ctx)) == 1
    assert await count(ctx, InboundMessage) == 1


async def test_it_applies_once_when_the_ack_never_reaches_the_sender(
    ctx: AppContext, db_url: str, tmp_path: Path
) -> None:
    await make_endpoint(ctx, senders=("EPIC^EPICADT",))
    message = siu(control_id="LOST-ACK")
    listener = start_listener(db_url, tmp_path)
    try:
        # The sender hangs up the moment it has sent: the ACK has nowhere to go.
        _send_raw(listener.port, encode_frame(message), close_with_reset=True)

        async def recorded() -> bool:
            return await count(ctx, InboundMessage) == 1

        await _wait_until(recorded, timeout=15, what="the message to be committed")
        [ack] = await asyncio.to_thread(
            mllp_send, listener.port, write_message(tmp_path, "m.hl7", message)
        )
    finally:
        listener.stop()

    assert (ack.code, ack.acked_id) == ("AA", "LOST-ACK")
    assert len(await appointments(ctx)) == 1


async def test_it_applies_a_shared_batch_once_when_killed_before_its_commit(
    ctx: AppContext, db_url: str, tmp_path: Path
) -> None:
    """Eight connections at once, queued for group commit behind a locked table. The listener
    dies before any commit; after a restart, python-hl7's mllp_send resends all eight (twice)
    and each booking, its contacts and its notification jobs exist exactly once."""
    from openvisit.models import Notification

    await make_endpoint(ctx, senders=("EPIC^EPICADT",), sms=True)
    paths = [
        write_message(tmp_path, f"m{i}.hl7", siu(control_id=f"GROUP-{i}", filler=f"G{i}"))
        for i in range(8)
    ]
    listener = start_listener_logging_frames(db_url, tmp_path)
    async with ctx.db.engine.connect() as blocker:
        await blocker.begin()
        if BACKEND == "postgres":
            await blocker.execute(text("LOCK TABLE appointment IN EXCLUSIVE MODE"))
        else:
            await blocker.execute(text("SELECT 1"))
        senders = [
            subprocess.Popen(
                [str(MLLP_SEND), "--loose", "-p", str(listener.port), "127.0.0.1", "-f", str(p)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for p in paths
        ]
        # Every message is inside the listener, queued behind the locked commit.
        await frames_received(listener, len(paths))
        listener.proc.kill9()
        outputs = [s.communicate(timeout=15)[0] for s in senders]
        await blocker.rollback()
    assert [acks_in(out) for out in outputs] == [[]] * 8  # nobody heard AA: all must resend
    assert await appointments(ctx) == []

    restarted = start_listener(db_url, tmp_path, name="mllp-restarted")
    try:
        first = await asyncio.gather(*(asyncio.to_thread(mllp_send, restarted.port, p)
                                       for p in paths))
        again = await asyncio.gather(*(asyncio.to_thread(mllp_send, restarted.port, p)
                                       for p in paths))
    finally:
        restarted.stop()
    assert sorted((a.code, a.acked_id) for [a] in first) == sorted(
        ("AA", f"GROUP-{i}") for i in range(8))
    assert [a.raw for [a] in again] == [a.raw for [a] in first]  # resends: the stored ACKs
    assert sorted(a.ehr_appointment_id for a in await appointments(ctx)) == [
        f"G{i}" for i in range(8)]
    assert await count(ctx, InboundMessage) == 8
    assert await count(ctx, Contact) == 16
    assert await count(ctx, Notification) == 24 and await count(ctx, Job) == 24
