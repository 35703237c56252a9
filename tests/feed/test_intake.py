"""SIU intake through the real feed on the run's database (issue 11, items 1-4 and 7).

The variation corpus gets AA and is stored exactly (times in UTC, contacts, department,
provider); truly broken messages get AE/AR with a reason a person can act on, and a message
that can never be stored is never answered "temporary error, resend later".
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError

from openvisit.context import AppContext
from openvisit.feed import intake as intake_module
from openvisit.feed import service as service_module
from openvisit.feed.intake import TEMPORARY_TEXT, SiuFeed
from openvisit.models import Contact, InboundMessage
from tests.hl7v2.corpus import (
    FAMILIES,
    NEWLINES,
    OFFSET_STYLES,
    OPTIONAL,
    PRECISIONS,
    SETUP,
    Booking,
    Variation,
    expected,
    message,
)
from tests.hl7v2.support import replace_field
from tests.support.backend import BACKEND

from .support import appointments, count, make_endpoint, read_ack

FUTURE = datetime(2031, 5, 6, 14, 15, tzinfo=UTC)


def seeded_variations(seed: int, n: int) -> list[Variation]:
    """``n`` reproducible variations (the database tests cannot draw with hypothesis: one
    database per example would take minutes)."""
    rng = random.Random(seed)
    return [
        Variation(
            newline=rng.choice(NEWLINES),
            pid_first=rng.random() < 0.5,
            z_segments=tuple(rng.randrange(40) for _ in range(rng.randrange(3))),
            notes=tuple(rng.randrange(40) for _ in range(rng.randrange(4))),
            precision=rng.choice(PRECISIONS),
            offset_style=rng.choice(OFFSET_STYLES),
            sender_offset=rng.choice((-300, 0, 60, 135, 330)),
            omit=frozenset(rng.sample(OPTIONAL, rng.randrange(4))),
            repeat_groups=rng.random() < 0.5,
            escapes=rng.random() < 0.5,
            msh7_junk=rng.random() < 0.3,
        )
        for _ in range(n)
    ]


async def endpoint_for(ctx: AppContext, family: str) -> None:
    sender, tz, region = SETUP[family]
    await make_endpoint(ctx, senders=(sender,), timezone=tz, region=region, slug=f"org-{family}")


def booking(family: str, n: int) -> Booking:
    phone = {"uk24": "+447400123{:03d}", "v28": "+420601123{:03d}"}.get(family, "+1202555{:04d}")
    return Booking(
        start=FUTURE + timedelta(days=n, minutes=15 * n),
        minutes=20 + n,
        control_id=f"{family}-{n}",
        filler=f"F-{family}-{n}",
        placer=f"P-{family}-{n}",
        phone=phone.format(100 + n),
        email=f"patient.{n}@example.org",
        language=("en", "es", "cs", "it", "ar")[n % 5],
        department=f"DEPT {n}",
        facility=("North & South | Clinic é", "Clinic", "Main/Annex")[n % 3],
        provider=f"P{n}00",
        visit_number=f"900{n}",
    )


@pytest.mark.parametrize("family", FAMILIES)
async def test_it_stores_each_family_and_its_variations_exactly(
    ctx: AppContext, family: str
) -> None:
    await endpoint_for(ctx, family)
    feed = SiuFeed(ctx)
    cases = list(enumerate(seeded_variations(hash(family) % 1000, 6)))
    for n, variation in cases:
        raw = message(family, booking(family, n), variation)
        reply = await feed.handle(raw)
        ack = read_ack(reply.ack or b"")
        # The UK family asks for enhanced-mode commit acks (MSH-15 AL): CA, not AA.
        want = "CA" if family == "uk24" else "AA"
        assert (ack.code, ack.acked_id) == (want, f"{family}-{n}"), (variation, ack.text)

    stored = {a.ehr_appointment_id: a for a in await appointments(ctx)}
    async with ctx.transaction() as session:
        contacts = {
            (c.appointment_id, c.kind): ctx.cipher.decrypt(c.value_enc)
            for c in await session.scalars(select(Contact))
        }
    for n, _variation in cases:
        b = booking(family, n)
        want = expected(family, b)
        row = stored[b.filler]
        assert (row.start_at, row.end_at) == (want.start, want.end)
        assert row.start_at is not None and row.start_at.utcoffset() == timedelta(0)
        assert row.placer_appointment_id == b.placer
        assert row.department == want.department
        assert row.provider_ehr_id == want.provider
        assert row.encounter_id == want.visit_number
        assert row.language == want.language
        assert ctx.refs.read(row) == want.patient_ref
        assert contacts.get((row.id, "sms")) == want.sms
        assert contacts.get((row.id, "email")) == want.email
    assert await count(ctx, InboundMessage) == len(cases)


async def test_a_v24_feed_in_original_mode_gets_aa_with_what_it_said(ctx: AppContext) -> None:
    """The UK v2.4 family without MSH-15/16 (original acknowledgment mode, as most v2.4
    feeds run): application acks (AA), not commit acks, and the same stored facts."""
    await endpoint_for(ctx, "uk24")
    feed = SiuFeed(ctx)
    cases = list(enumerate(seeded_variations(24, 4)))
    for n, variation in cases:
        raw = replace_field(replace_field(message("uk24", booking("uk24", n), variation),
                                          "MSH", 15, ""), "MSH", 16, "")
        ack = read_ack((await feed.handle(raw)).ack or b"")
        assert (ack.code, ack.acked_id) == ("AA", f"uk24-{n}"), (variation, ack.text)
    stored = {a.ehr_appointment_id: a for a in await appointments(ctx)}
    for n, _variation in cases:
        want = expected("uk24", booking("uk24", n))
        row = stored[booking("uk24", n).filler]
        assert (row.start_at, row.end_at) == (want.start, want.end)
        assert (row.department, row.provider_ehr_id) == (want.department, want.provider)
        assert ctx.refs.read(row) == want.patient_ref


def broken(family: str, segment: str, number: int, value: str) -> bytes:
    return replace_field(message(family, booking(family, 0)), segment, number, value)


def without_start(family: str) -> bytes:
    raw = message(family, booking(family, 0))
    for segment, number in (("AIS", 4), ("AIL", 6), ("AIP", 6), ("TQ1", 7), ("SCH", 11)):
        try:
            raw = replace_field(raw, segment, number, "")
        except AssertionError:
            pass  # the family has no such segment
    return raw


# (name, message, ACK code, field named in ERR and MSA-3, words the reason must hold)
BROKEN = [
    ("NUL in SCH-2", broken("epic23", "SCH", 2, "F-1\x00"), "AE", "SCH-2", ("NUL",)),
    ("NUL in PV1-19", broken("v28", "PV1", 19, "90\x0001"), "AE", "PV1-19", ("NUL",)),
    ("NUL in PID-3", broken("uk24", "PID", 3, "99\x0099^^^NHS^NH"), "CE", "PID-3", ("NUL",)),
    ("SCH-2 too long", broken("v251", "SCH", 2, "F" * 256), "AE", "SCH-2", ("255",)),
    ("AIL-3 too long", broken("v28", "AIL", 3, "D" * 300), "AE", "AIL-3", ("255",)),
    ("AIP-3 too long", broken("epic23", "AIP", 3, "1" * 300), "AE", "AIP-3", ("255",)),
    ("year 1", broken("epic23", "AIS", 4, "00010101000000+0215"), "AE", "AIS-4", ("1900",)),
    ("year 9999", broken("v251", "TQ1", 7, "99991231230000-1200"), "AE", "TQ1-7", ("2999",)),
    ("month 13", broken("v28", "AIS", 4, "20311306141500"), "AE", "AIS-4", ("impossible",)),
    ("no start", without_start("v251"), "AE", "AIS-4", ("start",)),
    ("no ids", replace_field(broken("uk24", "SCH", 2, ""), "SCH", 1, ""), "CE", "SCH-2",
     ("SCH-1",)),
    ("two patients",
     message("epic23", booking("epic23", 0)) + b"PID|2||OTHER9^^^EPI^MR\r", "AE", "PID[2]",
     ("different patients",)),
    ("MSH-10 too long", broken("epic23", "MSH", 10, "C" * 256), "AR", "MSH-10", ("255",)),
    ("NUL in MSH-10", broken("v28", "MSH", 10, "C\x001"), "AR", "MSH-10", ("NUL",)),
    ("unsupported event", broken("v251", "MSH", 9, "SIU^S99^SIU_S12"), "AR", "MSH-9.2", ()),
]


@pytest.mark.parametrize(
    ("raw", "code", "where", "words"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
async def test_it_refuses_a_truly_broken_message_with_a_reason_and_never_as_temporary(
    ctx: AppContext, raw: bytes, code: str, where: str, words: tuple[str, ...]
) -> None:
    for family in FAMILIES:
        await endpoint_for(ctx, family)

    reply = await SiuFeed(ctx).handle(raw)

    ack = read_ack(reply.ack or b"")
    assert (ack.code, reply.temporary) == (code, False), ack.text
    assert ack.has_err and TEMPORARY_TEXT not in ack.reason
    # MSA-3 starts the reason (cut between words at 80 characters); ERR holds all of it.
    assert len(ack.text) <= 80 and ack.reason.startswith(ack.text.removesuffix("..."))
    assert where in ack.reason and all(w in ack.reason for w in words), ack.reason
    assert await appointments(ctx) == []
    assert await count(ctx, InboundMessage) == 0


async def test_it_refuses_undecodable_bytes_only_in_a_field_it_keeps(ctx: AppContext) -> None:
    await endpoint_for(ctx, "epic23")
    feed = SiuFeed(ctx)
    utf8 = replace_field(message("epic23", booking("epic23", 1)), "MSH", 18, "UNICODE UTF-8")
    in_note = utf8 + b"NTE|1||caf\xe9 au lait\r"
    # replace_field writes ISO 8859-1: "É" becomes the byte 0xC9, which is not UTF-8.
    in_department = replace_field(
        replace_field(utf8, "MSH", 10, "BAD-BYTES"), "AIL", 3, "CAFÉ^^^CLINIC"
    )

    note = read_ack((await feed.handle(in_note)).ack or b"")
    department = read_ack((await feed.handle(in_department)).ack or b"")

    assert note.code == "AA"
    assert (department.code, "AIL-3" in department.reason, "MSH-18" in department.reason) == (
        "AE",
        True,
        True,
    )


async def test_it_answers_a_value_the_database_refuses_as_permanent_not_temporary(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The safety net under validation: if a value the database refuses gets past the checks
    # (here simulated), resending it cannot help, so the answer is AE without "resend later".
    await endpoint_for(ctx, "epic23")
    real = intake_module.apply_siu_batch

    async def refusing(session, *, items, **kwargs):  # type: ignore[no-untyped-def]
        await real(session, items=items, **kwargs)
        raise DataError("INSERT ...", {}, ValueError("value out of range"))

    monkeypatch.setattr(intake_module, "apply_siu_batch", refusing)
    reply = await SiuFeed(ctx).handle(message("epic23", booking("epic23", 2)))

    ack = read_ack(reply.ack or b"")
    assert (ack.code, reply.temporary) == ("AE", False)
    assert TEMPORARY_TEXT not in ack.reason and "cannot be stored" in ack.reason
    assert await appointments(ctx) == []


@pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL refuses NUL in text; SQLite not")
async def test_it_answers_a_nul_postgresql_refuses_as_permanent_even_unchecked(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With validation switched off, the real PostgreSQL error (22021) still gets a permanent
    # AE: a database error may be the last line of defence, never "resend later".
    await endpoint_for(ctx, "epic23")
    monkeypatch.setattr(service_module, "check_siu", lambda message: None)
    monkeypatch.setattr(intake_module, "check_siu", lambda message: None)

    reply = await SiuFeed(ctx).handle(broken("epic23", "SCH", 2, "F-1\x00"))

    ack = read_ack(reply.ack or b"")
    assert (ack.code, reply.temporary) == ("AE", False), ack.text
    assert await appointments(ctx) == []
