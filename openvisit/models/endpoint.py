"""EHR endpoints, certificates, phone numbers and SMS settings (DESIGN §2.1, §4)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openvisit.models.base import Base, Timestamped, new_id
from openvisit.models.choices import (
    AUTH_METHODS,
    ENDPOINT_STATES,
    ENVIRONMENTS,
    NUMBER_STATES,
    SMS_PROVIDERS,
    VENDORS,
    AuthMethod,
    EndpointState,
    Environment,
    NumberState,
    SmsProvider,
    Vendor,
    choice,
)

#: The vocabularies live in :mod:`openvisit.models.choices`; re-exported for older imports.
__all__ = [
    "AUTH_METHODS", "ENDPOINT_STATES", "ENVIRONMENTS", "VENDORS",
    "Certificate", "EhrEndpoint", "PhoneNumber", "PhoneNumberEndpoint", "SmsSettings",
]


class EhrEndpoint(Timestamped, Base):
    """One EHR FHIR base in one environment, with its client registration and approval state."""

    __tablename__ = "ehr_endpoint"
    __table_args__ = (
        UniqueConstraint("organisation_id", "fhir_base", name="uq_ehr_endpoint_org_base"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    vendor: Mapped[Vendor] = mapped_column(
        choice(VENDORS, name="vendor", length=16), default="generic")
    environment: Mapped[Environment] = mapped_column(
        choice(ENVIRONMENTS, name="environment", length=16), default="test")
    #: Normalised FHIR base URL (no trailing slash); matched against the launch's ``iss``.
    fhir_base: Mapped[str] = mapped_column(String(500), index=True)
    client_id: Mapped[str] = mapped_column(String(255))
    #: Fernet-encrypted client secret (only for the client_secret_* methods).
    client_secret_enc: Mapped[str | None] = mapped_column(Text, default=None)
    auth_method: Mapped[AuthMethod] = mapped_column(
        choice(AUTH_METHODS, name="auth_method", length=32), default="private_key_jwt")
    #: EHR user id of the analyst who must approve this endpoint by SMART sign-in.
    approver_ehr_user: Mapped[str | None] = mapped_column(String(255), default=None)
    state: Mapped[EndpointState] = mapped_column(
        choice(ENDPOINT_STATES, name="state", length=24), default="draft")
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    approved_by: Mapped[str | None] = mapped_column(String(255), default=None)
    #: IANA zone for HL7 times without an offset.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: Vendor-specific options (Epic interconnect URL, status code table, Oracle room types…).
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Increments on every change; approval binds to a version.
    version: Mapped[int] = mapped_column(default=1)


class Certificate(Timestamped, Base):
    """An uploaded public certificate that signs inbound scheduling payloads (EHR-SPEC §6)."""

    __tablename__ = "certificate"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    environment: Mapped[Environment] = mapped_column(
        choice(ENVIRONMENTS, name="environment", length=16))
    subject: Mapped[str] = mapped_column(String(500))
    thumbprint_sha256: Mapped[str] = mapped_column(String(64), index=True)
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    der: Mapped[bytes] = mapped_column(LargeBinary)
    is_active: Mapped[bool] = mapped_column(default=True)


class PhoneNumber(Timestamped, Base):
    """A sending number provisioned through an SMS provider (provisioning is asynchronous)."""

    __tablename__ = "phone_number"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    e164: Mapped[str | None] = mapped_column(String(20), default=None, unique=True)
    provider: Mapped[SmsProvider] = mapped_column(
        choice(SMS_PROVIDERS, name="provider", length=32), default="outbox")
    state: Mapped[NumberState] = mapped_column(
        choice(NUMBER_STATES, name="state", length=16), default="requested")
    #: Toll-free / number verification status as reported by the provider.
    verification_status: Mapped[str] = mapped_column(String(32), default="unverified")
    provider_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    progress: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class PhoneNumberEndpoint(Base):
    """Links a number to an endpoint; one number may serve many endpoints."""

    __tablename__ = "phone_number_endpoint"

    phone_number_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("phone_number.id", ondelete="CASCADE"), primary_key=True
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ehr_endpoint.id", ondelete="CASCADE"), primary_key=True
    )


class SmsSettings(Timestamped, Base):
    """Per-endpoint notification settings."""

    __tablename__ = "sms_settings"

    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ehr_endpoint.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(default=False)
    confirmations_enabled: Mapped[bool] = mapped_column(default=True)
    #: Minutes before the start at which reminders go out, e.g. [1440, 60].
    reminder_offsets_minutes: Mapped[list[int]] = mapped_column(JSON, default=list)
    #: Local times "HH:MM" between which nothing is sent (deferred to the end of quiet hours).
    quiet_hours_start: Mapped[str | None] = mapped_column(String(5), default=None)
    quiet_hours_end: Mapped[str | None] = mapped_column(String(5), default=None)
    default_language: Mapped[str] = mapped_column(String(8), default="en")
    #: The two consents of the SMS set-up (terms of the provider, patient messaging).
    consent_terms_at: Mapped[datetime | None] = mapped_column(default=None)
    consent_messaging_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Messages per minute per sending number.
    rate_limit_per_minute: Mapped[int] = mapped_column(default=60)
    #: Replace letters outside the GSM 7-bit alphabet (č → c, á → a) when that keeps an SMS
    #: within fewer parts: Unicode SMS carry 70 characters per part instead of 160.
    sms_transliterate: Mapped[bool] = mapped_column(default=True)
