"""Jobs, audit log, message log, opt-outs, inbound HL7 dedup, quality samples, nonces."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openvisit.models.base import Base, BigIntId, Timestamped, new_id, utcnow
from openvisit.models.choices import (
    JOB_STATES,
    MEDIA_PATHS,
    MESSAGE_CHANNELS,
    MESSAGE_PROVIDERS,
    MESSAGE_STATUSES,
    JobState,
    MediaPath,
    MessageChannel,
    MessageProvider,
    MessageStatus,
    choice,
)

__all__ = ["JOB_STATES", "AuditLog", "ContextToken", "InboundMessage", "Job", "KeyMaterial",
           "MessageLog", "OptOut", "QualitySample", "SeenNonce", "SigninFailure"]


class Job(Base):
    """A durable unit of outside work (SMS, e-mail, FHIR write, provisioning, purge).

    Written in the same transaction as the change that causes it; claimed by a worker with a
    lease; retried with backoff; dead-lettered after ``max_attempts``.
    """

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_claim", "state", "due_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Handed to the outside call so a retry after a crash is recognised there.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    state: Mapped[JobState] = mapped_column(
        choice(JOB_STATES, name="state", length=16), default="pending")
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=8)
    locked_by: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditLog(Base):
    """Who changed what, before and after, when. Append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    #: "staff:<uuid>", "provider:<ehr user>", "system", "cli".
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(255), default=None)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class MessageLog(Timestamped, Base):
    """One SMS or e-mail: masked recipient and status, never the number or the text."""

    __tablename__ = "message_log"
    #: The delivery report reads an organisation's messages by time.
    __table_args__ = (Index("ix_message_log_org_created", "organisation_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    appointment_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    #: sms | email, or none for a message that was suppressed before a channel was chosen.
    channel: Mapped[MessageChannel] = mapped_column(
        choice(MESSAGE_CHANNELS, name="channel", length=8))
    provider: Mapped[MessageProvider] = mapped_column(
        choice(MESSAGE_PROVIDERS, name="provider", length=32))
    recipient_masked: Mapped[str] = mapped_column(String(64))
    #: Keyed hash of the recipient, to apply opt-outs and rate limits without keeping it.
    recipient_hash: Mapped[str] = mapped_column(String(64), index=True)
    template: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="en")
    status: Mapped[MessageStatus] = mapped_column(
        choice(MESSAGE_STATUSES, name="status", length=16), default="queued")
    provider_message_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    job_key: Mapped[str | None] = mapped_column(String(255), default=None, unique=True)
    #: When the provider's delivery receipt (delivered / undelivered) arrived.
    receipt_at: Mapped[datetime | None] = mapped_column(default=None)


class OptOut(Base):
    """A recipient who replied STOP to this organisation (keyed hash, not the number)."""

    __tablename__ = "opt_out"

    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), primary_key=True
    )
    recipient_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    opted_out_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundMessage(Base):
    """An accepted HL7 message keyed by sender + MSH-10: a resend is answered, not re-applied."""

    __tablename__ = "inbound_message"
    __table_args__ = (
        UniqueConstraint("sender", "control_id", name="uq_inbound_message_sender_control"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    sender: Mapped[str] = mapped_column(String(255))
    control_id: Mapped[str] = mapped_column(String(255))
    event: Mapped[str] = mapped_column(String(8))
    ack_code: Mapped[str] = mapped_column(String(2))
    ack: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class QualitySample(Base):
    """Call quality from a browser's WebRTC stats for one participant at one moment."""

    __tablename__ = "quality_sample"
    #: The quality report ranks each participant's samples (median, p95) per visit.
    __table_args__ = (Index("ix_quality_sample_visit_participant", "visit_id", "participant_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    visit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"))
    participant_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    media_path: Mapped[MediaPath | None] = mapped_column(
        choice(MEDIA_PATHS, name="media_path", length=8), default=None)
    rtt_ms: Mapped[float | None] = mapped_column(default=None)
    jitter_ms: Mapped[float | None] = mapped_column(default=None)
    packet_loss_pct: Mapped[float | None] = mapped_column(default=None)
    bitrate_kbps: Mapped[float | None] = mapped_column(default=None)
    frame_width: Mapped[int | None] = mapped_column(default=None)
    frame_height: Mapped[int | None] = mapped_column(default=None)


class SeenNonce(Base):
    """Single-use values (OAuth state, JWT ``jti``) with an expiry, shared by all replicas."""

    __tablename__ = "seen_nonce"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class KeyMaterial(Timestamped, Base):
    """Deployment keys (the SMART client signing keys), encrypted with the field cipher."""

    __tablename__ = "key_material"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value_enc: Mapped[str] = mapped_column(Text)


class ContextToken(Timestamped, Base):
    """A signed, revocable context token of an integration record (e.g. device test)."""

    __tablename__ = "context_token"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ehr_endpoint.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(32))
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(255), default="system")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class SigninFailure(Base):
    """Failed portal sign-ins in the current window, per client address and per (account
    name, client address), for throttling; keyed by a keyed hash, never the name itself."""

    __tablename__ = "signin_failure"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Attempts in the window that were not (yet) successes, counted *before* the password
    #: is checked (one atomic upsert), so concurrent guesses cannot overtake the limit.
    failures: Mapped[int] = mapped_column(default=0)
    window_start: Mapped[datetime] = mapped_column(default=utcnow, index=True)
