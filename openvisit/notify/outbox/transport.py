"""The embedded outbox: the default "provider" that keeps messages in the database.

Nothing leaves the machine. A newcomer running ``make demo`` reads the messages (and, in
development, clicks their links) on ``/ops/outbox``. The table plays the provider's side of
the wire, keyed by the sender's reference like a provider with idempotency keys, so sending
twice stores once and reconciliation is exact.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from sqlalchemy.exc import IntegrityError

from openvisit.context import AppContext
from openvisit.crypto import mask_email, mask_phone
from openvisit.models import OutboxMessage, utcnow
from openvisit.notify import repository as repo
from openvisit.notify.transport import EmailTransport, SendResult, SmsTransport


class _Outbox:
    def __init__(self, app: AppContext) -> None:
        self.app = app

    async def store(
        self, *, channel: str, to: str, sender: str, reference: str, text: str,
        subject: str | None = None, html: str | None = None, retain_until: datetime | None,
    ) -> SendResult:
        """Store once per reference (its own transaction: the outbox is the outside world)."""
        cipher = self.app.cipher
        async with self.app.transaction() as session:
            existing = await repo.outbox_id(session, reference)
            if existing is not None:
                return SendResult(f"outbox-{existing}")
            row = OutboxMessage(
                reference=reference, channel=channel, sender=sender,
                recipient_masked=mask_phone(to) if channel == "sms" else mask_email(to),
                recipient_enc=cipher.encrypt(to), text_enc=cipher.encrypt(text),
                subject_enc=cipher.encrypt(subject) if subject is not None else None,
                html_enc=cipher.encrypt(html) if html is not None else None,
                purge_at=retain_until
                or utcnow() + timedelta(hours=self.app.settings.contact_grace_hours),
            )
            try:
                async with session.begin_nested():
                    session.add(row)
                    await session.flush()
            except IntegrityError:
                # A concurrent attempt with the same reference won: same message, one copy.
                again = await repo.outbox_id(session, reference)
                if again is None:
                    raise
                return SendResult(f"outbox-{again}")
            return SendResult(f"outbox-{row.id}")

    async def find(self, reference: str) -> list[SendResult]:
        async with self.app.transaction() as session:
            found = await repo.outbox_id(session, reference)
        return [] if found is None else [SendResult(f"outbox-{found}")]


class OutboxSms(SmsTransport):
    """SMS into the outbox table."""

    name: ClassVar[str] = "outbox"

    def __init__(self, app: AppContext) -> None:
        self._outbox = _Outbox(app)

    async def send(
        self, *, to: str, body: str, sender: str, reference: str,
        retain_until: datetime | None = None, first_attempt_at: datetime | None = None,
    ) -> SendResult:
        return await self._outbox.store(channel="sms", to=to, sender=sender, text=body,
                                        reference=reference, retain_until=retain_until)

    async def reconcile(
        self, *, to: str, body: str, sender: str, reference: str, since: datetime
    ) -> list[SendResult]:
        """Exact: the outbox row exists if and only if the message was "sent"."""
        return await self._outbox.find(reference)


class OutboxEmail(EmailTransport):
    """E-mail into the outbox table."""

    name: ClassVar[str] = "outbox"

    def __init__(self, app: AppContext) -> None:
        self._outbox = _Outbox(app)

    async def send(
        self, *, to: str, subject: str, text: str, html: str | None, sender: str,
        sender_name: str, reference: str, retain_until: datetime | None = None,
        calendar: str | None = None,
    ) -> SendResult:
        # The outbox keeps what people read; the calendar file is named, not stored.
        if calendar is not None:
            text = f"{text.rstrip()}\n\n[attachment: visit.ics]\n"
        return await self._outbox.store(channel="email", to=to, sender=sender, text=text,
                                        subject=subject, html=html, reference=reference,
                                        retain_until=retain_until)

    async def reconcile(
        self, *, to: str, subject: str, text: str, sender: str, reference: str, since: datetime
    ) -> list[SendResult]:
        return await self._outbox.find(reference)


def sms_transport(app: AppContext) -> SmsTransport:
    return OutboxSms(app)


def email_transport(app: AppContext) -> EmailTransport:
    return OutboxEmail(app)
