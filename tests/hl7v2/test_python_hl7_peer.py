"""Our framing and ACKs against python-hl7's independent asyncio MLLP reader and writer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import hl7
from hl7.mllp import HL7StreamReader, HL7StreamWriter, open_hl7_connection, start_hl7_server

from openvisit.hl7v2 import (
    Hl7ParseError,
    MllpDecoder,
    ack_mode,
    build_ack,
    build_fallback_ack,
    encode_frame,
    parse_msh,
    parse_siu,
)

from .support import NEW_YORK, epic

NOW = datetime(2024, 3, 5, 15, 16, 17, tzinfo=UTC)


async def test_it_sends_frames_python_hl7_reads_and_reads_its_acks() -> None:
    received: list[str] = []

    async def peer(reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        message = await reader.readmessage()
        received.append(str(message.segment("MSH")(10)))
        writer.writemessage(message.create_ack(ack_code="AA", message_id="PEER-ACK-1"))
        await writer.drain()
        writer.close()

    server = await start_hl7_server(peer, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        frame = encode_frame(epic())
        for i in range(0, len(frame), 7):  # dribble it out in small writes
            writer.write(frame[i : i + 7])
            await writer.drain()
        decoder, acks = MllpDecoder(), list[bytes]()
        while not acks:
            chunk = await asyncio.wait_for(reader.read(5), timeout=10)
            assert chunk, "peer closed without an ACK"
            acks += decoder.feed(chunk)
        writer.close()
        await writer.wait_closed()

    assert received == ["84726031"]
    header = parse_msh(acks[0])
    assert (header.message_type, header.control_id) == ("ACK", "PEER-ACK-1")
    assert str(hl7.parse(acks[0].decode()).segment("MSA")(2)) == "84726031"


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal listener built from the core: decode, parse, acknowledge."""
    decoder = MllpDecoder()
    while chunk := await reader.read(3):
        for raw in decoder.feed(chunk):
            try:
                msg = parse_siu(raw, default_tz=NEW_YORK, default_region="US")
            except Hl7ParseError as error:
                ack = build_fallback_ack(
                    raw,
                    error=error,
                    code="AR" if error.rejects else "AE",
                    control_id="OV-NACK",
                    now=NOW,
                    sending_application="OPENVISIT",
                    sending_facility="TELEHEALTH",
                )
            else:
                ack = build_ack(
                    msg.header,
                    code=ack_mode(msg.header).response_code(None),
                    control_id=f"OV-{msg.control_id}",
                    now=NOW,
                    sending_application="OPENVISIT",
                    sending_facility="TELEHEALTH",
                )
            writer.write(encode_frame(ack))
            await writer.drain()
    writer.close()


async def test_it_answers_python_hl7_clients_with_acks_they_parse() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await open_hl7_connection("127.0.0.1", port)
        writer.writemessage(hl7.parse(epic().decode()))
        good = await asyncio.wait_for(reader.readmessage(), timeout=10)
        writer.writemessage(hl7.parse(epic().decode().replace("SIU^S12", "SIU^S18")))
        rejected = await asyncio.wait_for(reader.readmessage(), timeout=10)
        writer.close()
        await writer.wait_closed()

    assert str(good.segment("MSA")(1)) == "AA"
    assert str(good.segment("MSA")(2)) == "84726031"
    assert str(good.segment("MSH")(10)) == "OV-84726031"
    assert str(rejected.segment("MSA")(1)) == "AR"
    assert str(rejected.segment("ERR")(1)(1)(4)(1)) == "201"


def test_it_tokenises_several_times_faster_than_python_hl7() -> None:
    """Issue 11 item 20: the reason written in openvisit/hl7v2/__init__.py for OpenVisit's
    own ER7 tokenizer, checked rather than only stated (≈ 37 µs vs ≈ 2,100 µs measured; the
    test asks for a tenth of that margin, so a busy machine cannot fail it). Best of 5."""
    import time

    from openvisit import hl7v2
    from openvisit.hl7v2 import er7

    text = er7.decode(epic())

    def best(fn: object, n: int = 200) -> float:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(n):
                fn(text)  # type: ignore[operator]
            runs.append((time.perf_counter() - started) / n)
        return min(runs)

    ours, theirs = best(er7.parse), best(lambda t: hl7.parse(t.replace("\n", "\r")))
    print(f"er7.parse {ours * 1e6:.0f} µs, hl7.parse {theirs * 1e6:.0f} µs")
    assert theirs / ours >= 5, f"ours {ours * 1e6:.0f} µs, python-hl7 {theirs * 1e6:.0f} µs"
    assert "python-hl7" in (hl7v2.__doc__ or "")
