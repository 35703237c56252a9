"""Integration records: what the EHR analyst copies into the EHR build (Epic's "FDI records").

Five records per endpoint, generated from its current configuration: provider launch,
patient launch, direct SMS link, SMS configuration and device test. Each names its
environment and FHIR base up front, because pasting the test record into production (or
the reverse) is the most common set-up error. Epic records show the context-link form with
``%CSN%`` (and ``%CONFERENCEID%`` for group visits).

The device-test record carries a **context token**: a signed reference (itsdangerous, key
derived from the deployment secret with HKDF for this purpose only) to a
:class:`~openvisit.models.ContextToken` row. The signature stops forgery; the row makes it
revocable (``revoked_at``) and re-issuable without changing the secret.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, Signer
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.certificates import active_certificates
from openvisit.context import AppContext
from openvisit.crypto import derive_key
from openvisit.db import after_commit
from openvisit.errors import Gone, InvalidInput, NotFound
from openvisit.feed.commands import configure_feed
from openvisit.feed.senders import invalidate
from openvisit.feed.service import hl7_options
from openvisit.launch import scopes as launch_scopes
from openvisit.launch.epic_config import LEGACY_RISK, EpicLinkConfig
from openvisit.models import ContextToken, EhrEndpoint, PhoneNumber, utcnow
from openvisit.portal import repository
from openvisit.portal.signin.sessions import Principal
from openvisit.portal.sms.service import endpoint_sms, format_offsets

DEVICE_TEST = "devicetest"
KINDS = ("provider_launch", "patient_launch", "direct_sms", "sms_configuration", "device_test")
#: What the launches ask for (openvisit.launch.scopes), for the analyst to register.
PROVIDER_SCOPES = launch_scopes.for_records("provider")
PATIENT_SCOPES = launch_scopes.for_records("patient")
_V1_NOTE = "SMART v1 EHRs: {}"


def _signer(app: AppContext) -> Signer:
    key = derive_key(app.settings.secret_key, purpose="openvisit context token")
    return Signer(key, salt="openvisit.context-token", sep=".")


def sign_context_token(app: AppContext, token: ContextToken) -> str:
    """The opaque string put in the device-test URL: the row id (hex) and its HMAC."""
    return _signer(app).sign(token.id.hex).decode()


async def verify_context_token(
    session: AsyncSession, *, app: AppContext, value: str, purpose: str = DEVICE_TEST
) -> ContextToken:
    """The live :class:`ContextToken` a signed value refers to.

    Raises :class:`NotFound` for a forged, damaged or unknown token and :class:`Gone` for a
    revoked one (the message says to ask for the current record).
    """
    try:
        token_id = uuid.UUID(hex=_signer(app).unsign(value.strip()).decode())
        row = await session.get(ContextToken, token_id)
    except (BadSignature, ValueError, TypeError):
        row = None
    if row is None or row.purpose != purpose:
        raise NotFound("This device-test link is not valid. Ask the clinic for a new link.")
    if row.revoked_at is not None:
        raise Gone("This device-test link was withdrawn by the clinic. Ask them for the "
                   "current link.", title="This link was withdrawn")
    return row


async def current_context_token(
    session: AsyncSession, *, endpoint: EhrEndpoint, actor: str
) -> ContextToken:
    """The endpoint's live device-test token, issued (and audited) on first need."""
    token = await repository.live_context_token(session, endpoint_id=endpoint.id,
                                                purpose=DEVICE_TEST)
    if token is None:
        token = ContextToken(endpoint_id=endpoint.id, purpose=DEVICE_TEST, created_by=actor)
        session.add(token)
        await session.flush()
        await record(session, actor=actor, action="context_token.create", obj=token,
                     organisation_id=endpoint.organisation_id)
    return token


async def rotate_context_token(
    session: AsyncSession, *, principal: Principal, endpoint: EhrEndpoint
) -> ContextToken:
    """Revoke the live device-test token and issue a new one (the old links stop working)."""
    principal.require("org_admin", doing="replace context tokens")
    old = await repository.live_context_token(session, endpoint_id=endpoint.id,
                                              purpose=DEVICE_TEST)
    if old is not None:
        old.revoked_at = utcnow()
        await session.flush()
        await record(session, actor=principal.actor, action="context_token.revoke", obj=old,
                     organisation_id=endpoint.organisation_id)
    return await current_context_token(session, endpoint=endpoint, actor=principal.actor)


@dataclass
class RecordField:
    key: str
    label: str
    value: str
    note: str = ""


@dataclass
class IntegrationRecord:
    kind: str
    title: str
    purpose: str
    environment: str
    fhir_base: str
    fields: list[RecordField] = field(default_factory=list)

    def as_json(self, *, endpoint: EhrEndpoint) -> dict[str, Any]:
        return {"record": self.kind, "title": self.title, "environment": self.environment,
                "fhir_base": self.fhir_base, "vendor": endpoint.vendor,
                "endpoint_id": str(endpoint.id), "endpoint_name": endpoint.name,
                "approved": endpoint.state == "approved",
                "endpoint_version": endpoint.version,
                "fields": {f.key: f.value for f in self.fields}}


def _epic_link(app: AppContext, endpoint: EhrEndpoint, kind: str) -> list[RecordField]:
    config = EpicLinkConfig.of(endpoint.options)
    base = f"{app.settings.public_url}/launch/epic/{endpoint.id}/{kind}?{config.param}="
    key = config.keys.get(kind)
    other = "patient" if kind == "provider" else "provider"
    fields = [
        RecordField("context_link", "Context link (Epic encrypts the query)",
                    base + "<encrypted SessionID=%CSN%&ExternalID=…&Timestamp=…"
                    "&LinkValidityPeriod=…&CustomData1=<department>>",
                    "Epic replaces %CSN% with the encounter CSN before encrypting."),
        RecordField("context_link_group", "Context link for group visits",
                    base + "<encrypted ConferenceID=%CONFERENCEID%&ExternalID=…&Timestamp=…>",
                    "Group visits use %CONFERENCEID% instead of %CSN%."),
        RecordField("context_link_cipher", "Encryption of this link",
                    f"AES {key.mode.value.upper()} with the {kind} key" if key
                    else "not set up yet (no key for this kind)",
                    f"Its own key: never the {other} link's key. GCM: 12-byte nonce, then "
                    "ciphertext and tag, base64."),
    ]
    if key is not None and key.legacy:
        fields.append(RecordField("context_link_warning", "Warning: unauthenticated mode",
                                  f"{key.mode.value} (legacy opt-in)", LEGACY_RISK))
    return fields


async def build_records(
    session: AsyncSession, *, app: AppContext, principal: Principal, endpoint: EhrEndpoint
) -> list[IntegrationRecord]:
    """All five records of ``endpoint``, issuing its device-test token on first use."""
    principal.require("org_admin", "approver", doing="read the integration records")
    pub = app.settings.public_url
    env, base = endpoint.environment, endpoint.fhir_base
    common = [
        RecordField("environment", "Environment", env.upper(),
                    "Paste only into the EHR's " + env + " environment."),
        RecordField("fhir_base", "FHIR base (iss)", base,
                    "The EHR must send exactly this as iss."),
        RecordField("client_id", "Client id", endpoint.client_id),
    ]
    auth = RecordField("client_authentication", "Client authentication", endpoint.auth_method)
    keys = (RecordField("jwks_url", "OpenVisit public keys (JWKS URL)",
                        f"{pub}/.well-known/jwks.json",
                        "Register this URL for private_key_jwt.")
            if endpoint.auth_method == "private_key_jwt" else None)
    provider = IntegrationRecord(
        "provider_launch", "Provider launch", "The clinician's \"Start virtual visit\" button.",
        env, base, [*common, RecordField("launch_url", "Launch URL", f"{pub}/launch"),
                    RecordField("redirect_uri", "Redirect URI", f"{pub}/launch/callback"),
                    RecordField("scopes", "Scopes", PROVIDER_SCOPES,
                                _V1_NOTE.format(launch_scopes.for_records_v1("provider"))),
                    auth])
    token = await current_context_token(session, endpoint=endpoint, actor=principal.actor)
    device_url = f"{pub}/devicetest?ctx={sign_context_token(app, token)}"
    patient = IntegrationRecord(
        "patient_launch", "Patient launch", "The patient portal's \"Begin visit\" button.",
        env, base, [*common, RecordField("launch_url", "Launch URL", f"{pub}/launch/patient"),
                    RecordField("redirect_uri", "Redirect URI", f"{pub}/launch/callback"),
                    RecordField("scopes", "Scopes", PATIENT_SCOPES,
                                _V1_NOTE.format(launch_scopes.for_records_v1("patient"))),
                    auth,
                    RecordField("device_test_context_token", "Device-test context token",
                                sign_context_token(app, token),
                                "Also in the device-test record.")])
    if keys is not None:
        provider.fields.append(keys)
        patient.fields.append(keys)
    if endpoint.vendor == "epic":
        provider.fields += _epic_link(app, endpoint, "provider")
        patient.fields += _epic_link(app, endpoint, "patient")
    window = (f"from {app.settings.join_window_before_minutes} min before the start to "
              f"{app.settings.join_window_after_minutes // 60} h after")
    direct = IntegrationRecord(
        "direct_sms", "Direct SMS link", "The link patients tap in the SMS.", env, base,
        [*common[:2], RecordField("link_template", "Link template", f"{pub}/v/<join token>",
                                  "OpenVisit creates one unguessable token per patient and "
                                  "appointment."),
         RecordField("valid", "Link works", window)])
    if endpoint.vendor == "epic":
        direct.fields += _epic_link(app, endpoint, "patient")[:1]
    device = IntegrationRecord(
        "device_test", "Device test", "Lets a patient test camera, microphone and connection "
        "before the visit; no appointment needed.", env, base,
        [*common[:2], RecordField("device_test_url", "Device-test URL", device_url),
         RecordField("context_token", "Context token", sign_context_token(app, token),
                     f"Issued {token.at:%Y-%m-%d %H:%M} UTC; replace it to withdraw old links."),
         RecordField("context_token_id", "Context token id", str(token.id))])
    return [provider, patient, direct, await _sms_record(session, app=app, endpoint=endpoint),
            device]


async def _sms_record(session: AsyncSession, *, app: AppContext,
                      endpoint: EhrEndpoint) -> IntegrationRecord:
    settings = await endpoint_sms(session, endpoint)
    links = await repository.links_of_endpoint(session, endpoint.id)
    numbers = [n for n in [await session.get(PhoneNumber, link.phone_number_id)
                           for link in links] if n is not None and n.e164]
    certs = await active_certificates(session, organisation_id=endpoint.organisation_id,
                                      environment=endpoint.environment, now=utcnow())
    pub = app.settings.public_url
    fields = [
        RecordField("environment", "Environment", endpoint.environment.upper()),
        RecordField("fhir_base", "FHIR base", endpoint.fhir_base),
        RecordField("sms_enabled", "SMS", "on" if settings.enabled else "off"),
        RecordField("sending_number", "Sending number",
                    ", ".join(n.e164 or "" for n in numbers) or app.settings.sms_sender or "none"),
        RecordField("confirmations", "Confirmation SMS",
                    "on" if settings.confirmations_enabled else "off"),
        RecordField("reminders", "Reminder SMS",
                    format_offsets(list(settings.reminder_offsets_minutes or [])) or "none",
                    "Before the appointment start."),
        RecordField("hl7_https", "Scheduling feed (HTTPS, signed)",
                    f"{pub}/hl7/siu?endpoint={endpoint.id}"),
        RecordField("hl7_mllp", "Scheduling feed (MLLP)",
                    f"{app.settings.mllp_host}:{app.settings.mllp_port}"),
        RecordField("certificate", "Signing certificate (SHA-256)",
                    ", ".join(c.thumbprint_sha256 for c in certs) or "none uploaded",
                    f"Uploaded for the {endpoint.environment} environment."),
    ]
    return IntegrationRecord("sms_configuration", "SMS configuration",
                             "How appointment messages reach OpenVisit and patients.",
                             endpoint.environment, endpoint.fhir_base, fields)


def find_record(records: list[IntegrationRecord], kind: str) -> IntegrationRecord:
    for item in records:
        if item.kind == kind:
            return item
    raise NotFound(f"There is no integration record {kind!r}; choose one of {', '.join(KINDS)}.")


# --- the scheduling feed (HL7 SIU) of the endpoint -------------------------------------------


@dataclass(frozen=True)
class FeedState:
    """Whether the endpoint's SIU feed is on: which senders (MSH-3^MSH-4) it accepts."""

    senders: list[str]
    jws_issuer: str | None

    @property
    def on(self) -> bool:
        return bool(self.senders)


def feed_state(endpoint: EhrEndpoint) -> FeedState:
    block = hl7_options(endpoint)
    raw = block.get("senders")
    senders = [str(s) for s in raw] if isinstance(raw, list) else []
    issuer = block.get("jws_issuer")
    return FeedState(senders=senders, jws_issuer=str(issuer) if issuer else None)


async def set_feed_senders(session: AsyncSession, *, app: AppContext, principal: Principal,
                           endpoint: EhrEndpoint, lines: list[str]) -> FeedState:
    """Replace the senders whose SIU messages book this endpoint's appointments (org admins;
    none turns the feed off). Raises :class:`InvalidInput` for a malformed sender and
    :class:`Conflict` when another endpoint lists it."""
    principal.require("org_admin", doing="change the scheduling feed")
    senders = [line.strip() for line in lines if line.strip()]
    if len(senders) > 50:
        raise InvalidInput("List at most 50 senders.", details={"field": "senders"})
    try:
        await configure_feed(session, endpoint=endpoint, actor=principal.actor, senders=senders)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, details={"field": "senders"}) from None

    async def reread() -> None:  # this process reads the senders again, once committed
        invalidate(app)

    after_commit(session, reread)
    return feed_state(endpoint)
