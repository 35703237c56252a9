"""From the scheduling feed to the patient: SIU messages in, confirmations out (outbox)."""

from __future__ import annotations

from sqlalchemy import select, update

from openvisit.context import AppContext
from openvisit.feed.intake import SiuFeed
from openvisit.models import OutboxMessage, SmsSettings
from tests.feed.support import make_endpoint, siu
from tests.notify.support import run_jobs

EPIC = ("EPIC^EPICADT",)


async def outbox(app: AppContext) -> list[tuple[str, str]]:
    """(channel, subject or SMS text) of every message, oldest first."""
    async with app.transaction() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
        return [(r.channel, app.cipher.decrypt(r.subject_enc or r.text_enc)) for r in rows]


async def test_it_tells_the_patient_about_booking_move_and_cancellation(app: AppContext) -> None:
    await make_endpoint(app, senders=EPIC, sms=True)
    async with app.transaction() as session:  # no pacing: each step's message goes at once
        await session.execute(update(SmsSettings).values(rate_limit_per_minute=6000))
    feed = SiuFeed(app)
    steps = [
        siu(control_id="C1"),
        siu(event="S13", control_id="C2", start="20300313093000", end="20300313100000"),
        # The interface engine sends the same reschedule again under a new control id.
        siu(event="S13", control_id="C3", start="20300313093000", end="20300313100000"),
        siu(event="S15", control_id="C4", start="20300313093000", end="20300313100000",
            status="Cancelled"),
    ]
    for raw in steps:
        await feed.handle(raw)
        await run_jobs(app)
    sent = await outbox(app)
    assert [channel for channel, _ in sent] == ["sms"] * 3
    booked, moved, cancelled = (text for _, text in sent)
    # New York time, as the EHR said, with the weekday and the zone named (issue 15 item 9);
    # the raw department code (AIL-3 10501, not named by the organisation) is left out.
    assert "is booked for Tuesday, March 12 at 9:30 AM EDT" in booked
    assert "has moved to Wednesday, March 13 at 9:30 AM EDT" in moved and "/v/" in moved
    assert "10501" not in booked + moved + cancelled
    assert "has been cancelled" in cancelled and "/v/" not in cancelled
