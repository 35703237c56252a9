"""Corpus messages of every family through the real listener, sent with python-hl7's
``mllp_send`` (issue 11): AA (CA for the enhanced-mode family) and stored exactly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from openvisit.context import AppContext
from tests.hl7v2.corpus import FAMILIES, SETUP, Variation, expected, message

from .support import appointments, make_endpoint, mllp_send, start_listener
from .test_intake import booking

pytestmark = pytest.mark.peers

VARIED = [
    Variation(pid_first=True, notes=(1, 5), z_segments=(3,), offset_style="none"),
    Variation(repeat_groups=True, escapes=True, precision="fraction_nodot",
              offset_style="colon", sender_offset=135, msh7_junk=True),
]


async def test_it_acknowledges_and_stores_corpus_messages_sent_with_mllp_send(
    ctx: AppContext, db_url: str, tmp_path: Path
) -> None:
    for family in FAMILIES:
        sender, tz, region = SETUP[family]
        await make_endpoint(ctx, senders=(sender,), timezone=tz, region=region,
                            slug=f"org-{family}")
    sent = [(family, n, variation) for family in FAMILIES for n, variation in enumerate(VARIED)]
    path = tmp_path / "corpus.hl7"
    path.write_bytes(b"\n".join(message(f, booking(f, n), v) for f, n, v in sent))
    listener = start_listener(db_url, tmp_path)
    try:
        acks = await asyncio.to_thread(mllp_send, listener.port, path)
    finally:
        listener.stop()

    assert [(a.code, a.acked_id) for a in acks] == [
        ("CA" if f == "uk24" else "AA", f"{f}-{n}") for f, n, _v in sent
    ]
    stored = {a.ehr_appointment_id: a for a in await appointments(ctx)}
    for family, n, _variation in sent:
        b, want = booking(family, n), expected(family, booking(family, n))
        row = stored[b.filler]
        assert (row.start_at, row.end_at) == (want.start, want.end), family
        assert (row.department, row.provider_ehr_id) == (want.department, want.provider)
    log = listener.proc.log.read_text(errors="replace")
    assert "hl7_message" in log
    for secret in ("E1234567", "example.org", "5550", "TEST^PATIENT", "EVERYMAN"):
        assert secret not in log
