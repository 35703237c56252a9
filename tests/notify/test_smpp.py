"""SMPP against a real SMSC (npm smpp): submits, long messages, delivery receipts recorded,
unknown outcomes reconciled through receipts, and a patient's STOP sent from the phone."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.errors import OutboundError
from openvisit.models import Job, OptOut, ProviderReceipt, utcnow
from openvisit.notify import delivery, gsm, providers
from openvisit.notify.smpp import protocol
from openvisit.notify.smpp.receiver import running_receiver
from openvisit.notify.smpp.transport import _classify
from openvisit.notify.transport import RecipientRejected
from tests.notify.support import logs, make_appointment, make_site, planned, run_jobs
from tests.peers.fixtures import PEERS_DIR, PeerProcess, Smsc, _node, free_port

SENDER = "+420700000001"
MO_PEER = Path(__file__).resolve().parent / "peers" / "smsc_mo.mjs"


@pytest.fixture
def smpp_app(configure: Callable[..., AppContext], smsc: Smsc) -> AppContext:
    return configure(smpp_host=smsc.host, smpp_port=smsc.port, smpp_system_id=smsc.system_id,
                     smpp_password=smsc.password, notify_timeout_seconds=5)


def submitted_to(smsc: Smsc, number: str) -> list[dict[str, Any]]:
    return [s for s in smsc.submitted() if s["destination_addr"] == number.lstrip("+")]


def parts_of(text: str) -> int:
    return len(protocol.encode_parts(text, reference=0)[0])


async def wait_until(predicate: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_it_submits_over_smpp_and_records_the_delivery_receipt(
    smpp_app: AppContext, smsc: Smsc,
) -> None:
    patient = "+420601200001"
    site = await make_site(smpp_app, offsets=[], number=SENDER, number_provider="smpp")
    appt = await make_appointment(smpp_app, site, start_at=utcnow() + timedelta(days=2),
                                  mobile=patient)
    [item] = await planned(smpp_app, appt)
    async with running_receiver(smpp_app) as receiver:
        assert await asyncio.to_thread(receiver.bound.wait, 10)
        await run_jobs(smpp_app)

        async def delivered() -> bool:
            return [m.status for m in await logs(smpp_app, appt)] == ["delivered"]

        await wait_until(delivered)
    parts = submitted_to(smsc, patient)
    assert len(parts) == 2  # 161-306 GSM characters: two linked parts
    for submit in parts:
        assert submit["source_addr"] == SENDER.lstrip("+")
        assert submit["registered_delivery"] == 1 and submit["data_coding"] == 0
        assert submit["user_message_reference"] == protocol.user_message_reference(item.key)
    text = "".join(gsm.decode(p["text"].encode("latin-1")) for p in parts)
    assert "is booked for" in text and "/v/" in text and text.endswith("Reply STOP to opt out.")
    [log] = await logs(smpp_app, appt)
    assert log.provider_message_id == parts[0]["message_id"]


async def test_it_splits_a_long_unicode_message_into_linked_parts(
    smpp_app: AppContext, smsc: Smsc,
) -> None:
    patient = "+420601200002"
    body = "Připomínáme Vaši videokonzultaci zítra v 10:30. " * 4  # UCS-2, 196 characters
    sms = providers.sms_transport(smpp_app, "smpp")
    result = await sms.send(to=patient, body=body, sender=SENDER, reference="long-1")
    parts = submitted_to(smsc, patient)
    assert result.parts == len(parts) == 3
    assert {p["data_coding"] for p in parts} == {8} and {p["esm_class"] for p in parts} == {0x40}
    assert result.provider_message_id == parts[0]["message_id"]


async def test_it_trusts_the_receipt_of_a_message_sent_just_before_a_crash(
    smpp_app: AppContext, smsc: Smsc,
) -> None:
    """The SMSC took the message, the worker died before recording it: the receipt (heard
    by the receiver) proves it went out, so the retry sends nothing."""
    patient = "+420601200003"
    site = await make_site(smpp_app, offsets=[], number=SENDER, number_provider="smpp")
    appt = await make_appointment(smpp_app, site, start_at=utcnow() + timedelta(days=2),
                                  mobile=patient)
    [item] = await planned(smpp_app, appt)
    async with smpp_app.transaction() as session:
        job = await session.scalar(select(Job).where(Job.idempotency_key == item.key))
        assert job is not None
        payload = job.payload
    async with running_receiver(smpp_app) as receiver:
        assert await asyncio.to_thread(receiver.bound.wait, 10)
        prepared = await delivery._prepare(smpp_app, key=item.key, payload=payload)
        assert prepared is not None
        await providers.sms_transport(smpp_app, "smpp").send(
            to=prepared.to, body=prepared.text, sender=prepared.sender, reference=item.key)
        # The receipt arrives while nobody has recorded the send: it is kept on its own.
        async with asyncio.timeout(10):
            while not await _receipts(smpp_app):
                await asyncio.sleep(0.05)
        await run_jobs(smpp_app)
    assert len(submitted_to(smsc, patient)) == parts_of(prepared.text)  # one message, once
    assert [m.status for m in await logs(smpp_app, appt)] == ["delivered"]


async def _receipts(app: AppContext) -> list[ProviderReceipt]:
    async with app.transaction() as session:
        return list(await session.scalars(select(ProviderReceipt)))


async def test_it_sends_again_when_no_receipt_comes_within_the_wait(
    configure: Callable[..., AppContext], smsc: Smsc,
) -> None:
    app = configure(smpp_host=smsc.host, smpp_port=smsc.port, smpp_system_id=smsc.system_id,
                    smpp_password=smsc.password, smpp_receipt_wait_seconds=0.5)
    patient = "+420601200004"
    site = await make_site(app, offsets=[], number=SENDER, number_provider="smpp")
    appt = await make_appointment(app, site, start_at=utcnow() + timedelta(days=2),
                                  mobile=patient)
    [item] = await planned(app, appt)
    async with app.transaction() as session:
        job = await session.scalar(select(Job).where(Job.idempotency_key == item.key))
        assert job is not None
        payload = job.payload
    prepared = await delivery._prepare(app, key=item.key, payload=payload)  # then it died
    assert prepared is not None
    await run_jobs(app)  # the outcome is unknown: it waits for a receipt first

    async def sent() -> bool:
        await run_jobs(app)
        return [m.status for m in await logs(app, appt)] == ["sent"]

    await wait_until(sent)
    assert len(submitted_to(smsc, patient)) == parts_of(prepared.text)


async def test_it_finishes_a_long_message_a_crash_cut_between_its_parts(
    configure: Callable[..., AppContext], smsc: Smsc, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker died after the SMSC took part 1 of 2: the retry sends part 2 alone, with
    the same concatenation reference, so the phone shows one whole message."""
    app = configure(smpp_host=smsc.host, smpp_port=smsc.port, smpp_system_id=smsc.system_id,
                    smpp_password=smsc.password, smpp_receipt_wait_seconds=0.5)
    patient = "+420601200007"
    site = await make_site(app, offsets=[], number=SENDER, number_provider="smpp")
    appt = await make_appointment(app, site, start_at=utcnow() + timedelta(days=2),
                                  mobile=patient)
    [item] = await planned(app, appt)
    async with app.transaction() as session:
        job = await session.scalar(select(Job).where(Job.idempotency_key == item.key))
        assert job is not None
        payload = job.payload
    async with running_receiver(app) as receiver:
        assert await asyncio.to_thread(receiver.bound.wait, 10)
        prepared = await delivery._prepare(app, key=item.key, payload=payload)
        assert prepared is not None
        assert parts_of(prepared.text) == 2
        whole = protocol.encode_parts

        def first_part_only(text: str, *, reference: int) -> tuple[list[bytes], int, int]:
            parts, coding, esm = whole(text, reference=reference)
            return parts[:1], coding, esm

        monkeypatch.setattr(protocol, "encode_parts", first_part_only)
        await providers.sms_transport(app, "smpp").send(
            to=prepared.to, body=prepared.text, sender=prepared.sender, reference=item.key)
        monkeypatch.setattr(protocol, "encode_parts", whole)  # ... and then it died
        async with asyncio.timeout(10):
            while not await _receipts(app):
                await asyncio.sleep(0.05)

        async def delivered() -> bool:
            await run_jobs(app)
            return [m.status for m in await logs(app, appt)] == ["delivered"]

        await wait_until(delivered)
    submits = submitted_to(smsc, patient)
    udhs = [bytes.fromhex((s["udh"][0] if isinstance(s["udh"], list) else s["udh"])["hex"])
            for s in submits]
    assert sorted(u[-1] for u in udhs) == [1, 2]  # each part once
    assert len({u[-3] for u in udhs}) == 1  # one concatenation reference: one message
    text = "".join(gsm.decode(p["text"].encode("latin-1")) for p in submits)
    assert text.endswith("Reply STOP to opt out.")
    [log] = await logs(app, appt)
    assert log.provider_message_id == submits[0]["message_id"]


@pytest.fixture
def mo_smsc(tmp_path: Path) -> Iterator[tuple[str, int, str, str, Path]]:
    """An SMSC that delivers a patient's "STOP" to whoever binds as a receiver."""
    node = _node()
    port = free_port()
    log = tmp_path / "smsc_mo.log"
    mo = [["+420601200005", SENDER, "STOP"], ["+420601200006", SENDER, "Thanks, see you"]]
    peer = PeerProcess("smsc_mo", [node, MO_PEER, "--port", str(port), "--system-id", "ov",
                                   "--password", "pw", "--mo", json.dumps(mo)], log, cwd=PEERS_DIR)
    peer.start()
    try:
        peer.wait_for_port(port)
        yield "127.0.0.1", port, "ov", "pw", log
    finally:
        peer.stop()


async def test_it_opts_out_a_patient_who_replies_stop_from_the_phone(
    configure: Callable[..., AppContext], mo_smsc: tuple[str, int, str, str, Path],
) -> None:
    host, port, system_id, password, log = mo_smsc
    app = configure(smpp_host=host, smpp_port=port, smpp_system_id=system_id,
                    smpp_password=password)
    ours = await make_site(app, slug="ours", number=SENDER, number_provider="smpp")
    theirs = await make_site(app, slug="theirs", number="+420700000002", number_provider="smpp")

    async def opted_out() -> list[tuple[object, str]]:
        async with app.transaction() as session:
            rows = await session.execute(select(OptOut.organisation_id, OptOut.recipient_hash))
            return [(org, digest) for org, digest in rows.all()]

    async with running_receiver(app):
        rows = await wait_until(opted_out)
        await wait_until(lambda: _acked(log, 2))
    assert rows == [(ours.organisation_id, app.hasher.hash("+420601200005"))]
    assert theirs.organisation_id not in {org for org, _ in rows}


async def _acked(log: Path, count: int) -> bool:
    return log.read_text().count("MO_ACK 0 ") >= count


@pytest.mark.parametrize(("status", "expected", "permanent"), [
    (0x0B, RecipientRejected, True),   # ESME_RINVDSTADR
    (0x58, OutboundError, False),      # throttled
    (0x14, OutboundError, False),      # message queue full
    (0x0A, OutboundError, True),       # invalid source address: configuration
])
def test_it_tells_lasting_from_passing_smsc_answers(
    status: int, expected: type[Exception], permanent: bool,
) -> None:
    error = _classify(status)
    assert type(error) is expected and error.permanent is permanent


def test_it_reads_receipts_and_replies() -> None:
    receipt = protocol.parse_deliver_sm(
        esm_class=0x04, data_coding=0, source_addr=b"420601200001", source_addr_ton=1,
        destination_addr=b"420700000001", destination_addr_ton=1,
        short_message=b"id:abc123 sub:001 dlvr:001 submit date:3001011200 done date:3001011200 "
                      b"stat:UNDELIV err:001 text:", user_message_reference=77)
    assert (receipt.is_receipt, receipt.message_id, receipt.status, receipt.reference,
            receipt.source) == (True, "abc123", "undelivered", 77, "+420601200001")
    reply = protocol.parse_deliver_sm(
        esm_class=0, data_coding=8, source_addr=b"420601200001", source_addr_ton=1,
        destination_addr=b"420700000001", destination_addr_ton=1,
        short_message="Stop prosím".encode("utf-16-be"))
    assert (reply.is_receipt, reply.text, reply.destination) == (False, "Stop prosím",
                                                                  "+420700000001")


async def test_it_logs_no_phone_number_or_text_even_at_debug(
    smpp_app: AppContext, smsc: Smsc, caplog: pytest.LogCaptureFixture,
) -> None:
    sms = providers.sms_transport(smpp_app, "smpp")
    with caplog.at_level(logging.DEBUG):
        await sms.send(to="+420601200007", body="Your visit", sender=SENDER, reference="d")
    hex_number = b"420601200007".hex()
    assert "601200007" not in caplog.text and hex_number not in caplog.text
    assert "Your visit" not in caplog.text and b"Your visit".hex() not in caplog.text
