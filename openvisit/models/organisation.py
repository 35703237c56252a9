"""Organisations, staff accounts and the IdP ↔ EHR user link (DESIGN §4)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openvisit.models.base import Base, Timestamped, new_id, utcnow
from openvisit.models.choices import (
    PROVIDER_LABEL_MODES,
    SIGNIN_METHODS,
    ProviderLabelMode,
    SigninMethod,
    StaffRole,
    choice,
)


class Organisation(Timestamped, Base):
    """A hospital or practice group: pinned to a data region, with a monthly visit allocation."""

    __tablename__ = "organisation"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    #: Data region (geography) the organisation's data must stay in, e.g. "eu-central".
    region: Mapped[str] = mapped_column(String(32), default="local")
    #: Visits allowed per calendar month; reports flag visits beyond it. None = unlimited.
    allocation_limit: Mapped[int | None] = mapped_column(default=None)
    #: ISO 3166 region used to normalise local phone numbers to E.164.
    default_phone_region: Mapped[str] = mapped_column(String(2), default="US")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: How patients see providers: "role" ("Your clinician") or "display" (configured label).
    provider_label_mode: Mapped[ProviderLabelMode] = mapped_column(
        choice(PROVIDER_LABEL_MODES, name="provider_label_mode", length=16), default="role")
    #: The two SMS consents of the portal's SMS step (send on the organisation's behalf;
    #: patients agreed to receive SMS). Both are needed before numbers or SMS are turned on.
    sms_consent_send_at: Mapped[datetime | None] = mapped_column(default=None)
    sms_consent_patients_at: Mapped[datetime | None] = mapped_column(default=None)
    #: EHR origins (https://host[:port]) whose embedded browser may show the visit room, the
    #: device test and launch pages in a frame (CSP frame-ancestors); empty = never framed.
    frame_ancestors: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Reports show patient references (FHIR Patient ids) instead of counts only; off until
    #: the organisation's admin turns it on.
    show_patient_refs: Mapped[bool] = mapped_column(default=False)
    #: Where a patient goes after the visit (the patient portal, a survey); shown on the
    #: "visit has ended" page. None: the page says to call or message the clinic.
    after_visit_url: Mapped[str | None] = mapped_column(String(500), default=None)
    #: Keep the in-visit chat (encrypted, purged with the visit like contacts); off: chat
    #: messages only pass through the web processes and are never written anywhere.
    store_chat: Mapped[bool] = mapped_column(default=False)
    #: Family members or caregivers a patient may invite to a visit themselves (0: none);
    #: each waits in the lobby, marked "invited by the patient", until the clinician admits.
    patient_guests_max: Mapped[int] = mapped_column(default=2)
    #: Retention (issue 18, docs/privacy.md), in days, enforced by ``privacy.retention``:
    #: visits with their seats, events, call-quality samples, chat and device tests, and
    #: appointments (contacts go far earlier: when the visit ends, plus grace) ...
    retention_visit_days: Mapped[int] = mapped_column(default=400)
    #: ... the message log (masked recipients and statuses of SMS and e-mail) and the
    #: write-back log ...
    retention_message_days: Mapped[int] = mapped_column(default=400)
    #: ... and the audit log (six years: HIPAA's retention of compliance records).
    retention_audit_days: Mapped[int] = mapped_column(default=2190)


class StaffAccount(Timestamped, Base):
    """Someone who signs in to the portal: org admin, approver or reporter.

    Local accounts (embedded default) have a username + argon2 hash; IdP accounts have the
    issuer + subject. No names or e-mail addresses are stored.
    """

    __tablename__ = "staff_account"
    __table_args__ = (
        UniqueConstraint("organisation_id", "username", name="uq_staff_account_org_username"),
        UniqueConstraint("idp_issuer", "idp_subject", name="uq_staff_account_idp"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    username: Mapped[str | None] = mapped_column(String(150), default=None)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    idp_issuer: Mapped[str | None] = mapped_column(String(500), default=None)
    idp_subject: Mapped[str | None] = mapped_column(String(255), default=None)
    #: Checked against :data:`~openvisit.models.choices.STAFF_ROLES` when written (a JSON
    #: list has no CHECK constraint that both databases share).
    roles: Mapped[list[StaffRole]] = mapped_column(JSON, default=list)
    is_active: Mapped[bool] = mapped_column(default=True)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class ProviderLink(Timestamped, Base):
    """The one piece of identity data kept for clinicians: IdP subject ↔ EHR user id.

    Created on a provider's first launch after the one-time IdP sign-in; later launches by the
    same ``fhirUser`` on the same endpoint go straight to the visit.
    """

    __tablename__ = "provider_link"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "ehr_user_id", name="uq_provider_link_endpoint_user"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ehr_endpoint.id", ondelete="CASCADE"), index=True
    )
    #: The EHR user id (fhirUser reference, e.g. "Practitioner/123").
    ehr_user_id: Mapped[str] = mapped_column(String(255))
    idp_issuer: Mapped[str] = mapped_column(String(500))
    idp_subject: Mapped[str] = mapped_column(String(255))


class StaffSession(Base):
    """A signed-in portal session (server-side, so sign-out and deactivation end it at once).

    The browser holds a random token; only its SHA-256 is stored. Idle and absolute expiry
    are checked on every request; ``csrf_token`` is the session-bound CSRF secret.
    """

    __tablename__ = "staff_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_account.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    #: How the person proved who they are.
    method: Mapped[SigninMethod] = mapped_column(
        choice(SIGNIN_METHODS, name="method", length=16), default="local")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)


class ApiToken(Timestamped, Base):
    """A bearer token for hospitals that configure OpenVisit by code (JSON API).

    Shown once at creation; only its SHA-256 is stored. Acts for the person who created it
    (``account_id``): on every request it grants only the roles it was given *that this person
    still holds*, and nothing once they are deactivated. Can be revoked.
    """

    __tablename__ = "api_token"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The first characters of the token, so people can tell tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    roles: Mapped[list[StaffRole]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(255))
    #: The person the token acts for (its creator, signed in to the portal).
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_account.id", ondelete="CASCADE"), index=True
    )
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class DepartmentName(Base):
    """What patients read for a department code of the scheduling feed (HL7 AIL-3 / PV1-3):
    ``10501`` → "Family medicine", per language where the organisation wants one (``language``
    ``""`` is the name in every other language). See :mod:`openvisit.notify.departments`."""

    __tablename__ = "department_name"
    __table_args__ = (UniqueConstraint("organisation_id", "code", "language",
                                       name="uq_department_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="")
    name: Mapped[str] = mapped_column(String(120))
