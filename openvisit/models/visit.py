"""Appointments, visits, participants, visit events and contacts (DESIGN §2.3, §4)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openvisit.models.base import Base, BigIntId, Timestamped, new_id, utcnow
from openvisit.models.choices import (
    APPOINTMENT_SOURCES,
    CONTACT_KINDS,
    INVITED_BY,
    LOBBY_STATES,
    MEDIA_BACKENDS,
    PARTICIPANT_ROLES,
    VISIT_KINDS,
    VISIT_STATUSES,
    AppointmentSource,
    ContactKind,
    InvitedBy,
    LobbyState,
    MediaBackend,
    ParticipantRole,
    VisitKind,
    VisitStatus,
    choice,
)

#: Seat roles (:data:`openvisit.models.choices.PARTICIPANT_ROLES`).
ROLES = PARTICIPANT_ROLES
__all__ = ["LOBBY_STATES", "ROLES", "Appointment", "ChatMessage", "Contact", "Participant",
           "Visit", "VisitEvent"]


class Appointment(Timestamped, Base):
    """An EHR appointment as OpenVisit knows it: references and times, no clinical data."""

    __tablename__ = "appointment"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "ehr_appointment_id", name="uq_appointment_endpoint_ref"),
        # The scheduling feed finds appointments by SCH-1 (placer id) too.
        Index("ix_appointment_endpoint_placer", "endpoint_id", "placer_appointment_id"),
        # The drop-off funnel reads an organisation's appointments by start time.
        Index("ix_appointment_org_start", "organisation_id", "start_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ehr_endpoint.id", ondelete="CASCADE"), index=True
    )
    #: FHIR Appointment id, or the HL7 filler appointment id (SCH-2) when fed by SIU.
    ehr_appointment_id: Mapped[str] = mapped_column(String(255))
    placer_appointment_id: Mapped[str | None] = mapped_column(String(255), default=None)
    #: Encounter id / Epic CSN (PV1-19).
    encounter_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    #: The patient reference (FHIR Patient id, PID-3 identifier): never in clear, only its
    #: keyed hash (to match) and a sealed copy (to write back), see
    #: :mod:`openvisit.privacy.refs`. Never a name.
    patient_ref_hash: Mapped[str | None] = mapped_column(String(80), default=None, index=True)
    patient_ref_enc: Mapped[str | None] = mapped_column(Text, default=None)
    provider_ehr_id: Mapped[str | None] = mapped_column(String(255), default=None)
    department: Mapped[str | None] = mapped_column(String(255), default=None)
    start_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    end_at: Mapped[datetime | None] = mapped_column(default=None)
    #: FHIR Appointment.status vocabulary (booked, cancelled, noshow, fulfilled…).
    status: Mapped[str] = mapped_column(String(24), default="booked")
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    #: "fhir" (launch), "hl7" (SIU feed), "epic-link" or "adhoc".
    source: Mapped[AppointmentSource] = mapped_column(
        choice(APPOINTMENT_SOURCES, name="source", length=16), default="fhir")


class Visit(Timestamped, Base):
    """One video visit. At most one per appointment, so relaunches land in the same visit."""

    __tablename__ = "visit"
    #: Reports read an organisation's visits by start time (and the month's running count).
    __table_args__ = (Index("ix_visit_org_started", "organisation_id", "started_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    appointment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("appointment.id", ondelete="SET NULL"), unique=True, default=None
    )
    #: Epic group visits key on a conference id instead of the CSN.
    conference_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    status: Mapped[VisitStatus] = mapped_column(
        choice(VISIT_STATUSES, name="status", length=16), default="scheduled")
    kind: Mapped[VisitKind] = mapped_column(
        choice(VISIT_KINDS, name="kind", length=16), default="visit")
    window_start: Mapped[datetime | None] = mapped_column(default=None)
    window_end: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    media_backend: Mapped[MediaBackend] = mapped_column(
        choice(MEDIA_BACKENDS, name="media_backend", length=16), default="mesh")


class Participant(Timestamped, Base):
    """A seat in a visit with a role and a lobby state enforced by the server."""

    __tablename__ = "participant"
    __table_args__ = (
        # One seat per clinician and per patient reference, so relaunches and re-sent links
        # land in the same seat even when two requests race (NULLs never collide).
        UniqueConstraint("visit_id", "role", "ehr_user_id", name="uq_participant_visit_staff"),
        UniqueConstraint("visit_id", "patient_ref_hash", name="uq_participant_visit_patient"),
        UniqueConstraint("visit_id", "role", "seat_no", name="uq_participant_visit_seat"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    visit_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("visit.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[ParticipantRole] = mapped_column(
        choice(PARTICIPANT_ROLES, name="role", length=16))
    lobby_state: Mapped[LobbyState] = mapped_column(
        choice(LOBBY_STATES, name="lobby_state", length=16), default="invited")
    #: Staff only: the EHR user id. Never a patient identifier.
    ehr_user_id: Mapped[str | None] = mapped_column(String(255), default=None)
    #: Patients only: the seat's patient reference (group visits have several), as a keyed
    #: hash and a sealed copy (:mod:`openvisit.privacy.refs`). Never in clear, never a name.
    patient_ref_hash: Mapped[str | None] = mapped_column(String(80), default=None)
    patient_ref_enc: Mapped[str | None] = mapped_column(Text, default=None)
    #: Role-based label shown to others ("Patient 2", "Interpreter"); never a name.
    label: Mapped[str] = mapped_column(String(64), default="")
    #: SHA-256 of the join token; the token itself is only ever in the link.
    join_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    connected: Mapped[bool] = mapped_column(default=False)
    waiting_since: Mapped[datetime | None] = mapped_column(default=None)
    admitted_at: Mapped[datetime | None] = mapped_column(default=None)
    left_at: Mapped[datetime | None] = mapped_column(default=None)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Bumped to revoke every join link issued for this seat (links are stateless HMACs).
    token_version: Mapped[int] = mapped_column(default=0)
    #: Ordinal among seats of the same role in the visit: "Patient 2" is role patient, seat 2.
    seat_no: Mapped[int] = mapped_column(default=1)
    #: "patient" for a family member or caregiver the patient invited; None: the clinician.
    invited_by: Mapped[InvitedBy | None] = mapped_column(
        choice(INVITED_BY, name="invited_by", length=16), default=None)
    #: Incremented on every state change, so a roster cached in a web process applies bus
    #: events in order even when two processes publish out of commit order.
    rev: Mapped[int] = mapped_column(default=0)
    #: "<page session>.<socket>" of the socket that holds the seat now; a newer socket takes
    #: over, and only the holder's disconnect clears ``connected``.
    connection_id: Mapped[str | None] = mapped_column(String(64), default=None)
    #: What this seat's own sockets may still add to visit_event and audit_log (token
    #: buckets by group, see :mod:`openvisit.visits.records`): a seat that reconnects or is
    #: refused a thousand times adds a bounded number of rows.
    record_budget: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class VisitEvent(Base):
    """Append-only log of what happened in a visit: the basis of write-back and reports."""

    __tablename__ = "visit_event"
    __table_args__ = (Index("ix_visit_event_visit_at", "visit_id", "at"),
                      # Reports find each seat's first event of a kind (funnel, lobby wait).
                      Index("ix_visit_event_participant_kind", "participant_id", "kind"))

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    visit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"))
    participant_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    #: joined, admitted, returned_to_lobby, connected, disconnected, left, removed, ended…
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Contact(Base):
    """A patient's mobile number or e-mail, encrypted, deleted when the appointment is over."""

    __tablename__ = "contact"
    __table_args__ = (UniqueConstraint("appointment_id", "kind", name="uq_contact_appt_kind"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    appointment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("appointment.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[ContactKind] = mapped_column(choice(CONTACT_KINDS, name="kind", length=8))
    value_enc: Mapped[str] = mapped_column(Text)
    purge_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChatMessage(Base):
    """One in-visit chat message, kept only when the organisation turned ``store_chat`` on:
    the text encrypted like a contact, deleted at ``purge_at`` (the visit's end plus the
    contact grace period) or with the visit."""

    __tablename__ = "chat_message"
    __table_args__ = (Index("ix_chat_message_visit_at", "visit_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    visit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"))
    #: The sending seat (a role label, never a name, is what the others saw).
    participant_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    text_enc: Mapped[str] = mapped_column(Text)
    purge_at: Mapped[datetime] = mapped_column(index=True)
