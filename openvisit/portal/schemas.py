"""JSON API shapes of the portal (they are the OpenAPI schema at ``/api/openapi.json``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openvisit.models import Certificate, EhrEndpoint, Organisation, PhoneNumber, StaffAccount
from openvisit.models.choices import AuthMethod, Environment, StaffRole, Vendor
from openvisit.models.organisation import ApiToken

Role = StaffRole


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeOut(BaseModel):
    organisation_id: uuid.UUID
    organisation_name: str
    display: str
    roles: list[str]
    via: Literal["session", "token"]
    csrf_token: str | None = Field(
        None, description="Send as X-CSRF-Token on changes made with the session cookie.")


class OrganisationOut(BaseModel):
    id: uuid.UUID
    slug: str
    display_name: str
    region: str
    allocation_limit: int | None = Field(description="Visits per month; null = unlimited.")
    default_phone_region: str
    timezone: str
    sms_consent_send_at: datetime | None
    sms_consent_patients_at: datetime | None
    frame_ancestors: list[str] = Field(
        description="EHR origins whose embedded browser may frame the visit pages."
    )

    @classmethod
    def of(cls, org: Organisation) -> OrganisationOut:
        return cls.model_validate(org, from_attributes=True)


class OrganisationPatch(_In):
    display_name: str | None = None
    region: str | None = None
    allocation_limit: int | None = None
    unlimited: bool = False
    default_phone_region: str | None = None
    timezone: str | None = None
    frame_ancestors: list[Annotated[str, Field(max_length=300)]] | None = Field(
        default=None, max_length=20,
        description="EHR origins (https://host[:port]) that may frame the visit pages.",
    )


class CheckStepOut(BaseModel):
    key: str
    title: str
    status: Literal["ok", "failed", "skipped"]
    message: str


class CheckOut(BaseModel):
    ok: bool
    fhir_base: str
    environment: str
    steps: list[CheckStepOut]
    warnings: list[str]
    fhir_version: str | None
    software: str | None
    checked_at: str


class CheckIn(_In):
    fhir_base: str
    environment: Environment = "test"
    vendor: Vendor = "generic"
    auth_method: AuthMethod = "private_key_jwt"


class EndpointIn(_In):
    fhir_base: str = Field(examples=["https://fhir.hospital.org/interconnect-fhir-oauth/api/FHIR/R4"])
    environment: Environment = "test"
    vendor: Vendor = "generic"
    client_id: str
    auth_method: AuthMethod | None = Field(
        None, description="Default: private_key_jwt, or client_secret_basic with a secret.")
    client_secret: str | None = None
    name: str | None = None
    approver_ehr_user: str | None = Field(None, examples=["Practitioner/prac-1"])
    timezone: str | None = None
    raw_basic_credentials: bool = Field(
        False, description="client_secret_basic: send the client id and secret unencoded, "
        "for token servers that do not form-decode the Basic header (RFC 6749 §2.3.1 says to "
        "form-encode them; many servers do not decode).")
    save_failed_check: bool = Field(
        False, description="Save as a draft even when the live FHIR base check fails.")


class EndpointPatch(_In):
    fhir_base: str | None = None
    environment: Environment | None = None
    vendor: Vendor | None = None
    client_id: str | None = None
    auth_method: AuthMethod | None = None
    client_secret: str | None = Field(None, description="Omit to keep; \"\" to remove.")
    name: str | None = None
    approver_ehr_user: str | None = None
    timezone: str | None = None
    raw_basic_credentials: bool | None = Field(
        None, description="Omit to keep; see the endpoint's creation.")
    save_failed_check: bool = False


class EndpointOut(BaseModel):
    id: uuid.UUID
    name: str
    environment: str
    vendor: str
    fhir_base: str
    client_id: str
    auth_method: str
    client_secret_set: bool
    approver_ehr_user: str | None
    state: Literal["draft", "awaiting_approval", "approved"]
    version: int
    approved_at: datetime | None
    approved_by: str | None
    timezone: str
    check: dict[str, Any] | None
    changes_since_approval: list[dict[str, str]]
    raw_basic_credentials: bool = Field(
        description="client_secret_basic credentials are sent unencoded.")
    warnings: list[str] = Field(
        description="Set-up problems worth a look, e.g. a secret that form-encoding changes.")

    @classmethod
    def of(cls, endpoint: EhrEndpoint) -> EndpointOut:
        from openvisit.ehr_endpoints.service import basic_form_encoded
        from openvisit.portal.endpoints.service import (
            basic_encoding_warning,
            changes_since_approval,
            last_check,
        )

        return cls(
            id=endpoint.id, name=endpoint.name, environment=endpoint.environment,
            vendor=endpoint.vendor, fhir_base=endpoint.fhir_base, client_id=endpoint.client_id,
            auth_method=endpoint.auth_method,
            client_secret_set=endpoint.client_secret_enc is not None,
            approver_ehr_user=endpoint.approver_ehr_user,
            state=endpoint.state,
            version=endpoint.version, approved_at=endpoint.approved_at,
            approved_by=endpoint.approved_by, timezone=endpoint.timezone,
            check=last_check(endpoint),
            changes_since_approval=[{"field": f, "approved": a, "now": n}
                                    for f, a, n in changes_since_approval(endpoint)],
            raw_basic_credentials=not basic_form_encoded(endpoint),
            warnings=[w for w in (basic_encoding_warning(endpoint),) if w])


class ApprovalStartOut(BaseModel):
    authorize_url: str = Field(description="Open in the approver's browser, signed in to the "
                               "portal with the same session.")


class ConsentsIn(_In):
    send: bool = Field(description="OpenVisit may send SMS to patients for the organisation.")
    patients: bool = Field(description="Patients have agreed to receive SMS.")


class EndpointSmsIO(_In):
    enabled: bool = False
    number_id: uuid.UUID | None = None
    confirmations_enabled: bool = True
    reminder_offsets_minutes: list[int] = Field(default_factory=list, examples=[[1440, 60]])
    quiet_hours_start: str | None = Field(None, examples=["21:00"])
    quiet_hours_end: str | None = Field(None, examples=["08:00"])
    default_language: str = "en"
    rate_limit_per_minute: int = 60
    sms_transliterate: bool = True


class NumberOut(BaseModel):
    id: uuid.UUID
    e164: str | None
    provider: str
    state: str
    progress: int
    step: str
    verification_status: str
    error: str | None
    endpoint_ids: list[uuid.UUID]

    @classmethod
    def of(cls, number: PhoneNumber, *, endpoint_ids: list[uuid.UUID]) -> NumberOut:
        from openvisit.portal.sms.numbers import step_label

        return cls(id=number.id, e164=number.e164, provider=number.provider, state=number.state,
                   progress=number.progress, step=step_label(number),
                   verification_status=number.verification_status, error=number.error,
                   endpoint_ids=endpoint_ids)


class NumberRegisterIn(_In):
    e164: str = Field(examples=["+1 202 555 0142"])


class NumberLinksIn(_In):
    endpoint_ids: list[uuid.UUID]


class CertificateIn(_In):
    environment: Environment
    certificate: str = Field(description="PEM, or base64 of the DER certificate (.cer).")


class CertificateOut(BaseModel):
    id: uuid.UUID
    environment: str
    subject: str
    thumbprint_sha256: str
    not_before: datetime
    not_after: datetime
    is_active: bool
    status: str

    @classmethod
    def of(cls, row: Certificate, *, status: str) -> CertificateOut:
        return cls(id=row.id, environment=row.environment, subject=row.subject,
                   thumbprint_sha256=row.thumbprint_sha256, not_before=row.not_before,
                   not_after=row.not_after, is_active=row.is_active, status=status)


class StaffIn(_In):
    kind: Literal["local", "idp"]
    username: str | None = None
    password: str | None = None
    subject: str | None = Field(None, description="The person's sub at the organisation's IdP.")
    roles: list[Role]


class StaffPatch(_In):
    roles: list[Role] | None = None
    active: bool | None = None


class StaffOut(BaseModel):
    id: uuid.UUID
    username: str | None
    idp_subject: str | None
    roles: list[str]
    is_active: bool
    last_login_at: datetime | None

    @classmethod
    def of(cls, account: StaffAccount) -> StaffOut:
        return cls.model_validate(account, from_attributes=True)


class ApiTokenIn(_In):
    name: str
    roles: list[Role]
    expires_in_days: int | None = None


class ApiTokenOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    roles: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    token: str | None = Field(None, description="Only in the creation answer; never again.")

    @classmethod
    def of(cls, token: ApiToken, *, secret: str | None = None) -> ApiTokenOut:
        out = cls.model_validate(token, from_attributes=True)
        out.token = secret
        return out
