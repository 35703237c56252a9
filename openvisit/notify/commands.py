"""What the ``openvisit org`` and ``openvisit endpoint notifications`` commands do.

Hospital IT scripts set-ups (issue 11, item 10): the organisation's default phone region,
its two SMS consents and each endpoint's notification settings, which until now only the
portal could set. Every change goes through the portal's own service functions
(:mod:`openvisit.portal.sms.service`), so validation, error texts and the audit log are the same;
the actor recorded is ``cli``. A command changes only what it is given: the other
settings keep their values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import phonenumbers

from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import get_endpoint
from openvisit.errors import InvalidInput, NotFound
from openvisit.models import EhrEndpoint, Organisation, PhoneNumber
from openvisit.portal import repository as portal_repository
from openvisit.portal.signin.sessions import Principal
from openvisit.portal.sms import service as sms

ACTOR = "cli"


def principal_for(organisation: Organisation) -> Principal:
    """The organisation admin the command acts as (audited as ``cli``)."""
    return Principal(
        organisation_id=organisation.id,
        roles=frozenset({"org_admin"}),
        via="cli",
        actor=ACTOR,
        display="the openvisit command",
    )


@dataclass(frozen=True, kw_only=True)
class NotificationChanges:
    """What to change in an endpoint's notification settings; ``None`` keeps the value."""

    enabled: bool | None = None
    confirmations: bool | None = None
    reminders: str | None = None
    quiet_hours: str | None = None
    language: str | None = None
    rate_per_minute: int | None = None
    transliterate: bool | None = None
    #: ``"+E164"``, a phone number id, ``"none"`` to unlink, or ``None`` to keep.
    number: str | None = None


async def organisation(session: Any, slug: str) -> Organisation:
    """The organisation with ``slug``; :class:`NotFound` naming the known ones otherwise."""
    found = await portal_repository.organisation_by_slug(session, slug)
    if found is None:
        known = ", ".join(await portal_repository.organisation_slugs(session)) or "none yet"
        raise NotFound(f"There is no organisation {slug!r} (known: {known}).")
    return found


async def set_organisation(
    app: AppContext, *, slug: str, phone_region: str | None, timezone: str | None
) -> Organisation:
    """Set the organisation's default phone region and/or time zone.

    Raises :class:`InvalidInput` as the portal does, and also for a two-letter code that is
    no phone region (the feed could not read a single number with it).
    """
    if phone_region is not None:
        code = phone_region.strip().upper()
        if len(code) == 2 and code.isalpha() and code not in phonenumbers.SUPPORTED_REGIONS:
            raise InvalidInput(
                f"{code!r} is not a country with phone numbers; use an ISO 3166 code such as "
                "US, GB, CZ or IT.", details={"field": "default_phone_region"})
    async with app.transaction() as session:
        org = await organisation(session, slug)
        return await sms.update_organisation(
            session,
            principal=principal_for(org),
            settings=app.settings,
            data=sms.OrganisationInput(default_phone_region=phone_region, timezone=timezone),
        )


async def set_consents(app: AppContext, *, slug: str, send: bool, patients: bool) -> Organisation:
    """Record or withdraw the organisation's two SMS consents (withdrawing turns SMS off)."""
    async with app.transaction() as session:
        org = await organisation(session, slug)
        return await sms.set_consents(
            session, principal=principal_for(org), send=send, patients=patients
        )


def _endpoint_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        raise InvalidInput(f"{text!r} is not an endpoint id (see openvisit endpoint list).") \
            from None


def _quiet(text: str) -> tuple[str | None, str | None]:
    if text.strip().lower() in ("", "none", "off"):
        return None, None
    start, sep, end = text.replace(" ", "").partition("-")
    if not sep:
        raise InvalidInput(f"{text!r} is not a period; write quiet hours as HH:MM-HH:MM, e.g. "
                           "21:00-08:00, or none.", details={"field": "quiet_hours_start"})
    return start, end


async def _number_id(
    session: Any, *, org: Organisation, endpoint: EhrEndpoint, text: str | None
) -> uuid.UUID | None:
    if text is None:
        links = await portal_repository.links_of_endpoint(session, endpoint.id)
        return links[0].phone_number_id if links else None
    if text.strip().lower() == "none":
        return None
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        pass
    number = await portal_repository.organisation_number(
        session, organisation_id=org.id, e164=text.strip())
    if number is None:
        raise InvalidInput(f"{text!r} is not one of the organisation's phone numbers; give it "
                           "in E.164 (+420601123456) or by id.", details={"field": "number_id"})
    assert isinstance(number.id, uuid.UUID)
    return number.id


async def configure_notifications(
    app: AppContext, *, endpoint_id: str, changes: NotificationChanges
) -> dict[str, Any]:
    """Apply ``changes`` to the endpoint's notification settings; returns them afterwards.

    Raises what :func:`openvisit.portal.sms.service.configure_endpoint_sms` raises (SMS on without
    both consents or a sending number, bad quiet hours, language or rate) and
    :class:`InvalidInput` for bad reminder times, as the portal page does.
    """
    async with app.transaction() as session:
        endpoint = await get_endpoint(session, _endpoint_id(endpoint_id))
        org = await session.get(Organisation, endpoint.organisation_id)
        assert org is not None
        current = await sms.endpoint_sms(session, endpoint)
        quiet_start, quiet_end = (current.quiet_hours_start, current.quiet_hours_end)
        if changes.quiet_hours is not None:
            quiet_start, quiet_end = _quiet(changes.quiet_hours)
        data = sms.EndpointSmsInput(
            enabled=current.enabled if changes.enabled is None else changes.enabled,
            number_id=await _number_id(session, org=org, endpoint=endpoint, text=changes.number),
            confirmations_enabled=(current.confirmations_enabled if changes.confirmations is None
                                   else changes.confirmations),
            reminder_offsets=(list(current.reminder_offsets_minutes or [])
                              if changes.reminders is None
                              else sms.parse_offsets(changes.reminders)),
            quiet_hours_start=quiet_start,
            quiet_hours_end=quiet_end,
            default_language=changes.language or current.default_language,
            rate_limit_per_minute=changes.rate_per_minute or current.rate_limit_per_minute,
            sms_transliterate=(current.sms_transliterate if changes.transliterate is None
                               else changes.transliterate),
        )
        await sms.configure_endpoint_sms(session, principal=principal_for(org),
                                         settings=app.settings, endpoint=endpoint, data=data)
    return await notification_settings(app, endpoint_id=endpoint_id)


async def notification_settings(app: AppContext, *, endpoint_id: str) -> dict[str, Any]:
    """The endpoint's notification settings as the command prints them."""
    async with app.transaction() as session:
        endpoint = await get_endpoint(session, _endpoint_id(endpoint_id))
        row = await sms.endpoint_sms(session, endpoint)
        links = await portal_repository.links_of_endpoint(session, endpoint.id)
        number = await session.get(PhoneNumber, links[0].phone_number_id) if links else None
        org = await session.get(Organisation, endpoint.organisation_id)
        return {
            "endpoint": str(endpoint.id),
            "organisation": org.slug if org else None,
            "phone_region": org.default_phone_region if org else None,
            "enabled": row.enabled,
            "confirmations": row.confirmations_enabled,
            "reminders": sms.format_offsets(list(row.reminder_offsets_minutes or [])) or "none",
            "quiet_hours": (f"{row.quiet_hours_start}-{row.quiet_hours_end}"
                            if row.quiet_hours_start else "none"),
            "language": row.default_language,
            "rate_per_minute": row.rate_limit_per_minute,
            "transliterate": row.sms_transliterate,
            "number": number.e164 if number else None,
            "consents": bool(org and sms.consents_given(org)),
        }
