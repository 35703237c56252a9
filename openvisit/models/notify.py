"""Notification bookkeeping: what was scheduled, the embedded outbox, receipts, send rates.

Contact details and message text appear here only encrypted with the field cipher, and only
for as long as the contact itself is kept (``purge_at``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openvisit.models.base import Base, BigIntId, utcnow
from openvisit.models.choices import (
    CONTACT_KINDS,
    NOTIFICATION_MESSAGES,
    NOTIFICATION_PURPOSES,
    SMS_PROVIDERS,
    ContactKind,
    NotificationMessage,
    NotificationPurpose,
    SmsProvider,
    choice,
)


class Notification(Base):
    """One message scheduled for an appointment, 1:1 with its ``notify.send`` job.

    The scheduler reads an appointment's history from here (what the patient was told, what
    is still pending) instead of scanning the job table. ``content_enc`` freezes the rendered
    message between the moment it is handed to a provider and the moment the send is
    recorded, so a retry after a crash sends (or looks for) exactly the same text.
    """

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    #: None for a clinician's invite link sent to an interpreter or guest: it is not one of
    #: the patient's messages, so the scheduler never sees it in the appointment's history.
    appointment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("appointment.id", ondelete="CASCADE"), index=True, default=None
    )
    job_key: Mapped[str] = mapped_column(String(255), unique=True)
    #: confirmation | cancellation | reminder | invite, or other (a send job without a row).
    purpose: Mapped[NotificationPurpose] = mapped_column(
        choice(NOTIFICATION_PURPOSES, name="purpose", length=16))
    #: The template: booked | rescheduled | modified | cancelled | reminder | invite.
    message: Mapped[NotificationMessage] = mapped_column(
        choice(NOTIFICATION_MESSAGES, name="message", length=16))
    #: What the message tells the patient (start time and department), hashed.
    fingerprint: Mapped[str] = mapped_column(String(32))
    start_at: Mapped[datetime]
    offset_minutes: Mapped[int | None] = mapped_column(default=None)
    #: Fernet-encrypted JSON {channel, to, subject, text, html}; cleared once sent.
    content_enc: Mapped[str | None] = mapped_column(Text, default=None)
    purge_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxMessage(Base):
    """A message "sent" through the embedded outbox provider: kept here, shown on /ops/outbox.

    Plays the part of the provider's side of the wire, so it is keyed by the sender's
    idempotency reference exactly as a real provider would be.
    """

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(255), unique=True)
    channel: Mapped[ContactKind] = mapped_column(choice(CONTACT_KINDS, name="channel", length=8))
    sender: Mapped[str] = mapped_column(String(255))
    recipient_masked: Mapped[str] = mapped_column(String(64))
    recipient_enc: Mapped[str] = mapped_column(Text)
    subject_enc: Mapped[str | None] = mapped_column(Text, default=None)
    text_enc: Mapped[str] = mapped_column(Text)
    html_enc: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    purge_at: Mapped[datetime] = mapped_column(index=True)


class ProviderReceipt(Base):
    """A delivery receipt that arrived before (or without) its message log row.

    SMPP receipts name the SMSC's message id; when a worker died between the SMSC accepting
    a message and the worker recording that id, the receipt is the only proof the message
    went out. The send job's reconciliation looks here (recipient hash + reference).
    """

    __tablename__ = "provider_receipt"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    #: The SMS provider whose receiver took the receipt (SMPP, Twilio).
    provider: Mapped[SmsProvider] = mapped_column(
        choice(SMS_PROVIDERS, name="provider", length=32))
    provider_message_id: Mapped[str] = mapped_column(String(255), index=True)
    recipient_hash: Mapped[str] = mapped_column(String(64), index=True)
    #: SMPP user_message_reference (decimal), when the SMSC echoed it.
    reference: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SenderRate(Base):
    """Per sending number rate state (GCRA: the theoretical arrival time of the next send)."""

    __tablename__ = "sender_rate"

    sender: Mapped[str] = mapped_column(String(64), primary_key=True)
    tat: Mapped[datetime] = mapped_column(default=utcnow)
