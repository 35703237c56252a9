"""The organisation's settings and the SMS step: the two consents, per-endpoint SMS set-up,
and which sending number serves which endpoint.

Consents are the organisation's (the seeds' two check boxes: OpenVisit may send SMS on the
organisation's behalf; patients agreed to receive them). Turning SMS on for an endpoint
copies them into its :class:`~openvisit.models.SmsSettings`, which is what the notification
engine reads; withdrawing them turns SMS off everywhere at once.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import i18n
from openvisit.audit import record, snapshot
from openvisit.config import Settings
from openvisit.errors import InvalidInput, NotFound
from openvisit.models import (
    EhrEndpoint,
    Organisation,
    PhoneNumber,
    PhoneNumberEndpoint,
    SmsSettings,
    utcnow,
)
from openvisit.models.choices import PROVIDER_LABEL_MODES, is_one_of
from openvisit.portal import repository
from openvisit.portal.signin.sessions import Principal
from openvisit.privacy import retention
from openvisit.web.security import parse_origins

_OFFSET = re.compile(r"^\s*(\d{1,5})\s*(m|min|mins|minutes?|h|hours?|d|days?)?\s*$", re.I)
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
MIN_OFFSET, MAX_OFFSET, MAX_REMINDERS = 5, 14 * 24 * 60, 5


async def organisation_of(session: AsyncSession, principal: Principal) -> Organisation:
    org = await session.get(Organisation, principal.organisation_id)
    if org is None:
        raise NotFound("Your organisation no longer exists.")
    return org


@dataclass
class OrganisationInput:
    display_name: str | None = None
    region: str | None = None
    allocation_limit: int | None = None
    unlimited: bool = False
    default_phone_region: str | None = None
    timezone: str | None = None
    #: EHR origins allowed to frame visit pages, one per entry (None = leave as is).
    frame_ancestors: list[str] | None = None
    #: How patients and guests see a clinician: "role" ("Your clinician") or "display" (the
    #: label the EHR launch gave the clinician's seat).
    provider_label_mode: str | None = None
    #: Keep the in-visit chat (encrypted, purged with the visit's contacts); None: as is.
    store_chat: bool | None = None
    #: People a patient may invite to their own visit (0–10); None: as is.
    patient_guests_max: int | None = None
    #: Retention in days (:mod:`openvisit.privacy.retention`); None: as is.
    retention_visit_days: int | None = None
    retention_message_days: int | None = None
    retention_audit_days: int | None = None


async def update_organisation(
    session: AsyncSession, *, principal: Principal, settings: Settings, data: OrganisationInput
) -> Organisation:
    """Change the organisation's name, data region, monthly allocation, phone region, zone
    and the EHR origins that may frame its visit pages.

    The data region cannot change once the organisation has appointments (its data would
    have to move). Raises :class:`InvalidInput` naming the field and the fix.
    """
    principal.require("org_admin", doing="change the organisation's settings")
    org = await organisation_of(session, principal)
    before = snapshot(org)
    if data.display_name is not None:
        name = data.display_name.strip()
        if not 1 <= len(name) <= 200:
            raise InvalidInput("The organisation's name must be 1–200 characters.",
                               details={"field": "display_name"})
        org.display_name = name
    if data.region is not None and data.region != org.region:
        if data.region not in settings.portal_regions:
            raise InvalidInput(f"Unknown data region {data.region!r}; choose one of "
                               f"{', '.join(settings.portal_regions)}.",
                               details={"field": "region"})
        if await repository.appointment_count(session, org.id):
            raise InvalidInput("The data region cannot change once the organisation has "
                               "appointments: their data is stored in the current region. "
                               "Ask the operator to migrate it.", details={"field": "region"})
        org.region = data.region
    if data.unlimited:
        org.allocation_limit = None
    elif data.allocation_limit is not None:
        if not 0 <= data.allocation_limit <= 10_000_000:
            raise InvalidInput("The monthly visit allocation is a whole number from 0 to "
                               "10,000,000, or tick \"unlimited\".",
                               details={"field": "allocation_limit"})
        org.allocation_limit = data.allocation_limit
    if data.default_phone_region is not None:
        code = data.default_phone_region.strip().upper()
        if not re.fullmatch(r"[A-Z]{2}", code):
            raise InvalidInput("The phone region is a two-letter country code such as US, CZ "
                               "or IT.", details={"field": "default_phone_region"})
        org.default_phone_region = code
    if data.timezone is not None:
        try:
            ZoneInfo(data.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"{data.timezone!r} is not a time zone; use an IANA name such as "
                               "Europe/Prague.", details={"field": "timezone"}) from None
        org.timezone = data.timezone
    if data.provider_label_mode is not None:
        if not is_one_of(data.provider_label_mode, PROVIDER_LABEL_MODES):
            raise InvalidInput("Choose how patients see the clinician: as “Your clinician” "
                               "or by the clinician's name from the EHR.",
                               details={"field": "provider_label_mode"})
        org.provider_label_mode = data.provider_label_mode
    if data.store_chat is not None:
        org.store_chat = data.store_chat
    if data.patient_guests_max is not None:
        if not 0 <= data.patient_guests_max <= 10:
            raise InvalidInput("A patient may invite from 0 (nobody) to 10 people.",
                               details={"field": "patient_guests_max"})
        org.patient_guests_max = data.patient_guests_max
    for kind in ("visit", "message", "audit"):
        days = getattr(data, f"retention_{kind}_days")
        if days is not None:
            setattr(org, f"retention_{kind}_days", retention.checked(kind, days))
    if data.frame_ancestors is not None:
        try:
            org.frame_ancestors = parse_origins(
                data.frame_ancestors, allow_http=settings.environment == "development"
            )
        except InvalidInput as exc:
            raise InvalidInput(exc.message, details={"field": "frame_ancestors"}) from None
    await session.flush()
    after = snapshot(org)
    if after != before:
        await record(session, actor=principal.actor, action="organisation.update", obj=org,
                     before=before, after=after, organisation_id=org.id)
    return org


def consents_given(org: Organisation) -> bool:
    return org.sms_consent_send_at is not None and org.sms_consent_patients_at is not None


async def set_consents(
    session: AsyncSession, *, principal: Principal, send: bool, patients: bool
) -> Organisation:
    """Record (or withdraw) the two SMS consents; withdrawing turns SMS off on every endpoint."""
    principal.require("org_admin", doing="change the SMS consents")
    org = await organisation_of(session, principal)
    before = {"send": org.sms_consent_send_at is not None,
              "patients": org.sms_consent_patients_at is not None}
    now = utcnow()
    org.sms_consent_send_at = (org.sms_consent_send_at or now) if send else None
    org.sms_consent_patients_at = (org.sms_consent_patients_at or now) if patients else None
    after = {"send": send, "patients": patients}
    if not consents_given(org):
        endpoints = await repository.endpoints_of(session, org.id)
        for settings_row in (await repository.sms_settings_of(
                session, [e.id for e in endpoints])).values():
            settings_row.enabled = False
            settings_row.consent_terms_at = settings_row.consent_messaging_at = None
    await session.flush()
    if after != before:
        await record(session, actor=principal.actor, action="sms.consents",
                     object_type="organisation", object_id=str(org.id), before=before,
                     after=after, organisation_id=org.id)
    return org


def parse_offsets(text: str) -> list[int]:
    """``"1d, 2h, 30"`` → ``[1440, 120, 30]`` minutes, largest first.

    Raises :class:`InvalidInput` naming the entry that is wrong.
    """
    found: set[int] = set()
    for raw in [p for p in re.split(r"[,;\s]+(?=\d)", text.strip()) if p.strip()]:
        match = _OFFSET.match(raw)
        if not match:
            raise InvalidInput(f"{raw.strip()!r} is not a reminder time; write minutes or hours "
                               "or days before the visit, e.g. \"1d, 2h, 30m\".",
                               details={"field": "reminder_offsets"})
        unit = (match.group(2) or "m")[0].lower()
        minutes = int(match.group(1)) * {"m": 1, "h": 60, "d": 1440}[unit]
        if not MIN_OFFSET <= minutes <= MAX_OFFSET:
            raise InvalidInput(f"{raw.strip()!r} is outside 5 minutes to 14 days before the "
                               "visit.", details={"field": "reminder_offsets"})
        found.add(minutes)
    if len(found) > MAX_REMINDERS:
        raise InvalidInput(f"At most {MAX_REMINDERS} reminders per appointment.",
                           details={"field": "reminder_offsets"})
    return sorted(found, reverse=True)


def format_offsets(minutes: list[int]) -> str:
    """``[1440, 120, 30]`` → ``"1d, 2h, 30m"`` (the inverse of :func:`parse_offsets`)."""
    out = []
    for value in minutes:
        if value % 1440 == 0:
            out.append(f"{value // 1440}d")
        elif value % 60 == 0:
            out.append(f"{value // 60}h")
        else:
            out.append(f"{value}m")
    return ", ".join(out)


@dataclass
class EndpointSmsInput:
    enabled: bool = False
    number_id: uuid.UUID | None = None
    confirmations_enabled: bool = True
    reminder_offsets: list[int] = field(default_factory=list)
    quiet_hours_start: str | None = None
    quiet_hours_end: str | None = None
    default_language: str = "en"
    rate_limit_per_minute: int = 60
    sms_transliterate: bool = True


async def endpoint_sms(session: AsyncSession, endpoint: EhrEndpoint) -> SmsSettings:
    """The endpoint's SMS settings row (a default one, not yet saved, if none exists)."""
    row = await session.get(SmsSettings, endpoint.id)
    return row or SmsSettings(endpoint_id=endpoint.id, enabled=False, confirmations_enabled=True,
                              reminder_offsets_minutes=[1440, 60], default_language="en",
                              rate_limit_per_minute=60, sms_transliterate=True)


async def sms_settings_of(session: AsyncSession,
                          endpoints: list[EhrEndpoint]) -> dict[uuid.UUID, SmsSettings]:
    """The stored SMS settings of these endpoints, by endpoint id (absent: never saved)."""
    return await repository.sms_settings_of(session, [e.id for e in endpoints])


async def sending_number_id(session: AsyncSession, endpoint: EhrEndpoint) -> uuid.UUID | None:
    """The id of the number the endpoint sends SMS from, if one is linked."""
    links = await repository.links_of_endpoint(session, endpoint.id)
    return links[0].phone_number_id if links else None


async def configure_endpoint_sms(
    session: AsyncSession, *, principal: Principal, settings: Settings, endpoint: EhrEndpoint,
    data: EndpointSmsInput,
) -> SmsSettings:
    """Save an endpoint's SMS set-up and its sending number (``None`` = unlink).

    Raises :class:`InvalidInput` (with the field) when SMS is turned on without both
    consents or without a sending number, for a number of another organisation or not
    active, and for malformed quiet hours, language or rate.
    """
    principal.require("org_admin", doing="change SMS settings")
    org = await organisation_of(session, principal)
    number: PhoneNumber | None = None
    if data.number_id is not None:
        number = await session.get(PhoneNumber, data.number_id)
        if number is None or number.organisation_id != org.id or number.state == "released":
            raise InvalidInput("That phone number is not one of your organisation's numbers.",
                               details={"field": "number_id"})
        if number.state != "active":
            raise InvalidInput(f"The number is still {number.state}; link it once it is "
                               "active.", details={"field": "number_id"})
    if data.enabled and not consents_given(org):
        raise InvalidInput("Give both SMS consents on the SMS page before turning SMS on.",
                           details={"field": "enabled"})
    if data.enabled and number is None and not settings.sms_sender:
        raise InvalidInput("Choose the phone number these SMS are sent from (get one on the "
                           "SMS page first).", details={"field": "number_id"})
    if bool(data.quiet_hours_start) != bool(data.quiet_hours_end):
        raise InvalidInput("Give both the start and the end of quiet hours, or neither.",
                           details={"field": "quiet_hours_start"})
    for value in (data.quiet_hours_start, data.quiet_hours_end):
        if value and not _HHMM.match(value):
            raise InvalidInput(f"{value!r} is not a time; write HH:MM, e.g. 21:00.",
                               details={"field": "quiet_hours_start"})
    if data.default_language not in i18n.LANGUAGES:
        raise InvalidInput(f"Choose a language from {', '.join(i18n.LANGUAGES)}.",
                           details={"field": "default_language"})
    if not 1 <= data.rate_limit_per_minute <= 6000:
        raise InvalidInput("The send rate is 1 to 6000 messages per minute per number.",
                           details={"field": "rate_limit_per_minute"})
    row = await session.get(SmsSettings, endpoint.id)
    before = snapshot(row) if row is not None else None
    if row is None:
        row = SmsSettings(endpoint_id=endpoint.id)
        session.add(row)
    row.enabled = data.enabled
    row.confirmations_enabled = data.confirmations_enabled
    row.reminder_offsets_minutes = list(data.reminder_offsets)
    row.quiet_hours_start = data.quiet_hours_start or None
    row.quiet_hours_end = data.quiet_hours_end or None
    row.default_language = data.default_language
    row.rate_limit_per_minute = data.rate_limit_per_minute
    row.sms_transliterate = data.sms_transliterate
    row.consent_terms_at = org.sms_consent_send_at if data.enabled else None
    row.consent_messaging_at = org.sms_consent_patients_at if data.enabled else None
    await session.flush()
    links_before = await _replace_links(session, endpoint=endpoint, number=number)
    after = {**snapshot(row), "number_id": str(number.id) if number else None}
    if before is None or {**before, "number_id": links_before} != after:
        await record(session, actor=principal.actor, action="sms.configure",
                     object_type="sms_settings", object_id=str(endpoint.id),
                     before={**before, "number_id": links_before} if before else None,
                     after=after, organisation_id=org.id)
    return row


async def _replace_links(
    session: AsyncSession, *, endpoint: EhrEndpoint, number: PhoneNumber | None
) -> str | None:
    """Make ``number`` the endpoint's only sending number; returns the previous one's id."""
    existing = await repository.links_of_endpoint(session, endpoint.id)
    previous = str(existing[0].phone_number_id) if existing else None
    for link in existing:
        if number is None or link.phone_number_id != number.id:
            await session.delete(link)
    if number is not None and not any(link.phone_number_id == number.id for link in existing):
        session.add(PhoneNumberEndpoint(phone_number_id=number.id, endpoint_id=endpoint.id))
    await session.flush()
    return previous
