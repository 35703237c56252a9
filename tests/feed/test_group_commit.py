"""Group commit: messages ready together on several connections share one transaction, and
each ACK still follows the commit that holds its message."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.feed import intake as intake_module
from openvisit.feed.group import GroupCommitter
from openvisit.feed.intake import SiuFeed
from openvisit.models import InboundMessage, Job, Notification

from .support import appointments, count, make_endpoint, read_ack, siu

EPIC = ("EPIC^EPICADT",)


async def _together(feed: SiuFeed, messages: Sequence[bytes]) -> list[Any]:
    """Hand ``messages`` to the feed at the same moment, as connections whose bytes arrived
    together do. A first message loads the sender directory, so all of them queue at once."""
    warm = await feed.handle(siu(control_id="WARM-UP", filler="WARM-UP"), grouped=True)
    assert warm.code == "AA"
    feed.committer.batches = feed.committer.items = 0
    return list(await asyncio.gather(*(feed.handle(m, grouped=True) for m in messages)))


async def _booked(ctx: AppContext) -> list[str]:
    return sorted(a.ehr_appointment_id for a in await appointments(ctx)
                  if a.ehr_appointment_id != "WARM-UP")


async def test_it_commits_messages_from_many_connections_in_one_transaction(
    ctx: AppContext,
) -> None:
    await make_endpoint(ctx, senders=EPIC, sms=True)
    feed = SiuFeed(ctx)
    messages = [siu(control_id=f"C{i}", filler=f"F{i}") for i in range(12)]

    replies = await _together(feed, messages)

    acks = [read_ack(r.ack) for r in replies]
    assert [(a.code, a.acked_id) for a in acks] == [("AA", f"C{i}") for i in range(12)]
    assert feed.committer.batches == 1 and feed.committer.items == 12
    assert await _booked(ctx) == sorted(f"F{i}" for i in range(12))
    # Each booking planned its confirmation and its two reminders (24 h and 1 h before).
    assert await count(ctx, Notification) == 3 * 13
    assert await count(ctx, Job) >= 3 * 13
    assert await count(ctx, InboundMessage) == 13


async def test_it_applies_a_message_sent_twice_in_one_batch_once(ctx: AppContext) -> None:
    await make_endpoint(ctx, senders=EPIC, sms=True)
    feed = SiuFeed(ctx)

    first, again, other = await _together(
        feed,
        [
            siu(control_id="SAME", filler="A"),
            siu(control_id="SAME", filler="A", start="20300401093000", end="20300401100000"),
            siu(control_id="OTHER", filler="B"),
        ],
    )

    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again.ack == first.ack and read_ack(again.ack).code == "AA"
    [a, _b, _warm] = sorted(await appointments(ctx), key=lambda x: x.ehr_appointment_id)
    assert a.start_at is not None and a.start_at.month == 3  # the first copy's content
    assert await count(ctx, InboundMessage) == 3
    assert await count(ctx, Notification) == 3 * 3


async def test_it_applies_changes_to_one_appointment_in_order_within_a_batch(
    ctx: AppContext,
) -> None:
    await make_endpoint(ctx, senders=EPIC, sms=True)
    feed = SiuFeed(ctx)

    replies = await _together(
        feed,
        [
            siu(control_id="1", filler="A"),
            siu(control_id="2", event="S13", filler="A", start="20300313093000",
                end="20300313100000"),
            siu(control_id="3", event="S15", filler="A", status="Cancelled",
                start="20300313093000", end="20300313100000"),
        ],
    )

    assert [r.code for r in replies] == ["AA", "AA", "AA"]
    assert feed.committer.batches == 1
    [appointment] = [a for a in await appointments(ctx) if a.ehr_appointment_id == "A"]
    assert appointment.status == "cancelled"
    assert appointment.start_at is not None and appointment.start_at.day == 13
    async with ctx.db.read() as session:
        rows = (await session.execute(
            select(Notification.purpose, Notification.message, Job.state)
            .join(Job, Job.idempotency_key == Notification.job_key)
            .where(Notification.appointment_id == appointment.id)
            .order_by(Notification.id)
        )).all()
    # Booked then moved then cancelled before anything went out: every message planned on
    # the way was cancelled, and no cancellation is sent for news the patient never got.
    assert [state for _p, _m, state in rows] == ["cancelled"] * len(rows)
    assert ("confirmation", "booked", "cancelled") in rows


async def test_it_commits_each_message_alone_when_the_shared_transaction_fails(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_endpoint(ctx, senders=EPIC)
    feed = SiuFeed(ctx)
    real = intake_module.apply_siu_batch
    poisoned = "F-POISON"

    async def fragile(session: Any, *, items: Any, **kwargs: Any) -> Any:
        # A message the database refuses (here simulated) fails any batch that holds it.
        if any(m.filler_appointment_id == poisoned for _e, m in items):
            raise RuntimeError("refused")
        return await real(session, items=items, **kwargs)

    monkeypatch.setattr(intake_module, "apply_siu_batch", fragile)
    replies = await _together(
        feed,
        [
            siu(control_id="1", filler="A"),
            siu(control_id="2", filler=poisoned),
            siu(control_id="3", filler="B"),
        ],
    )

    codes = [(read_ack(r.ack).code, read_ack(r.ack).text, r.temporary) for r in replies]
    assert codes == [
        ("AA", "", False),
        ("AE", "temporary error, resend later", True),
        ("AA", "", False),
    ]
    assert await _booked(ctx) == ["A", "B"]
    # Nothing of the refused message was kept, so its resend is applied exactly once.
    assert await count(ctx, InboundMessage) == 3


async def test_it_answers_a_resend_inside_a_batch_from_the_stored_ack(ctx: AppContext) -> None:
    await make_endpoint(ctx, senders=EPIC, sms=True)
    feed = SiuFeed(ctx)
    [first] = await _together(feed, [siu(control_id="SENT", filler="A")])

    resent, new = await _together(
        feed, [siu(control_id="SENT", filler="A"), siu(control_id="NEW", filler="B")]
    )

    assert resent.duplicate and resent.ack == first.ack
    assert (new.duplicate, read_ack(new.ack).code) == (False, "AA")
    assert await _booked(ctx) == ["A", "B"]
    assert await count(ctx, Notification) == 3 * 3


async def test_it_answers_refused_messages_at_once_without_waiting_for_the_batch(
    ctx: AppContext,
) -> None:
    await make_endpoint(ctx, senders=EPIC)
    feed = SiuFeed(ctx)

    good, bad, unknown = await _together(
        feed,
        [
            siu(control_id="1", filler="A"),
            siu(control_id="2", filler="B", start="2030031"),
            siu(control_id="3", filler="C", sender="STRANGER^NOWHERE"),
        ],
    )

    assert [read_ack(r.ack).code for r in (good, bad, unknown)] == ["AA", "AE", "AR"]
    assert feed.committer.items == 1
    assert await _booked(ctx) == ["A"]


async def test_the_committer_fails_every_waiting_caller_when_the_commit_breaks() -> None:
    async def broken(items: Sequence[int]) -> list[int]:
        return [1]  # fewer replies than items: a bug, never a silent mix-up of ACKs

    committer: GroupCommitter[int, int] = GroupCommitter(broken)
    results = await asyncio.gather(
        committer.submit(1), committer.submit(2), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)

    async def fine(items: Sequence[int]) -> list[int]:
        return [i * 10 for i in items]

    committer = GroupCommitter(fine, max_batch=2)
    assert await asyncio.gather(*(committer.submit(i) for i in range(5))) == [
        0, 10, 20, 30, 40
    ]
    assert (committer.batches, committer.items) == (3, 5)
