"""Write-back rows: one per resource OpenVisit writes into an EHR (issue 13, EHR-SPEC §5).

A row is written in the same transaction as the visit event (or message sent) that causes
it, together with the job that sends it, so the event and its write-back commit or vanish
together. The row is what the portal shows (state, the EHR's answer, the server id) and what
keeps order: rows of one ``order_key`` (the visit) are sent in ``id`` order, a row only once
every earlier row of its visit is ``sent`` or ``skipped``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openvisit.models.base import Base, BigIntId, utcnow
from openvisit.models.choices import (
    WRITEBACK_STATES,
    WRITEBACK_WHATS,
    WritebackState,
    WritebackWhat,
    choice,
)


class Writeback(Base):
    """One write into the EHR: what, for which event, and how it went."""

    __tablename__ = "writeback"
    __table_args__ = (
        Index("ix_writeback_order", "order_key", "id"),
        Index("ix_writeback_endpoint_created", "endpoint_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ehr_endpoint.id", ondelete="CASCADE"))
    #: The visit (or, for messages without a visit, the appointment) whose writes are ordered.
    order_key: Mapped[str] = mapped_column(String(64))
    #: Unique: the job key and the ``meta.tag`` the EHR dedupes on (``If-None-Exist``).
    key: Mapped[str] = mapped_column(String(120), unique=True)
    #: audit, encounter, appointment_status, devicetest, message, arrived, connection_status.
    what: Mapped[WritebackWhat] = mapped_column(choice(WRITEBACK_WHATS, name="what", length=32))
    #: The visit event kind (or message template) that caused it.
    event_kind: Mapped[str] = mapped_column(String(32))
    visit_event_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    #: References and times needed to build the resource (never a name or a message text).
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[WritebackState] = mapped_column(
        choice(WRITEBACK_STATES, name="state", length=16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    #: How many times a person re-ran it (each re-run is a job of its own key).
    reruns: Mapped[int] = mapped_column(default=0)
    http_status: Mapped[int | None] = mapped_column(default=None)
    #: The EHR's own words (OperationOutcome text) of the last failure, made safe to show.
    error: Mapped[str | None] = mapped_column(Text, default=None)
    #: ``Type/id`` of what the EHR stored (the dedupe of last resort, and a link for people).
    server_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
