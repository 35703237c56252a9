"""Sending phone numbers: provisioning through the SMS provider, registration, linking.

Provisioning can take minutes at a real provider, so it is a chain of durable jobs
(``portal.provision_number``), one per step, each in its own transaction: search → purchase →
configure → verification. Each step stores its progress on the :class:`PhoneNumber` row
(``progress`` %, ``state``, ``verification_status``, ``error``) as it commits, which is what
the portal's progress page polls. Every step is safe to run twice: it checks the row's
progress first, and the purchase is keyed by the job's idempotency key (Twilio: "do we own it
already?").

Providers implement :class:`~openvisit.notify.transport.NumberProvider` in
``openvisit/notify/<name>/numbers.py``, listed in
:data:`openvisit.notify.providers.NUMBER_PROVIDERS`; one without that module (SMPP, Azure)
cannot buy numbers here, and the portal offers to register a number the organisation already
has instead.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import phonenumbers
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record, snapshot
from openvisit.context import AppContext
from openvisit.errors import Conflict, InvalidInput, NotFound
from openvisit.jobs import enqueue
from openvisit.models import Organisation, PhoneNumber, PhoneNumberEndpoint, utcnow
from openvisit.notify import providers
from openvisit.portal import repository
from openvisit.portal.signin.sessions import Principal
from openvisit.portal.sms.service import consents_given, organisation_of

JOB_KIND = "portal.provision_number"
MAX_ATTEMPTS = 5
#: (step, progress once done, what the progress page says while it runs)
STEPS: tuple[tuple[str, int, str], ...] = (
    ("search", 25, "Searching the provider for an available number"),
    ("purchase", 60, "Reserving the number with the provider"),
    ("configure", 85, "Setting the number up for SMS"),
    ("verify", 100, "Checking the number's verification status"),
)


def can_provision(provider: str) -> bool:
    """Whether numbers can be bought through ``provider`` (else they are registered)."""
    return providers.can_provision(provider)


def step_label(number: PhoneNumber) -> str:
    """What the progress page says for the row's current progress."""
    if number.state == "failed":
        return "Provisioning failed"
    if number.state == "active":
        return "Ready"
    for _name, done_at, label in STEPS:
        if number.progress < done_at:
            return label
    return "Finishing"


async def _own_number(session: AsyncSession, principal: Principal,
                      number_id: uuid.UUID) -> PhoneNumber:
    number = await session.get(PhoneNumber, number_id)
    if number is None or number.organisation_id != principal.organisation_id:
        raise NotFound("There is no such phone number in your organisation.")
    return number


async def get_number(session: AsyncSession, *, principal: Principal,
                     number_id: uuid.UUID) -> PhoneNumber:
    return await _own_number(session, principal, number_id)


async def list_numbers(session: AsyncSession, *, principal: Principal) -> list[PhoneNumber]:
    return await repository.numbers_of(session, principal.organisation_id)


async def links_by_number(session: AsyncSession, *,
                          principal: Principal) -> dict[uuid.UUID, list[uuid.UUID]]:
    """number id → endpoint ids it serves."""
    out: dict[uuid.UUID, list[uuid.UUID]] = {}
    for link in await repository.links_of(session, principal.organisation_id):
        out.setdefault(link.phone_number_id, []).append(link.endpoint_id)
    return out


async def request_number(session: AsyncSession, *, app: AppContext,
                         principal: Principal) -> PhoneNumber:
    """Start provisioning a new number through the configured provider (a job chain).

    Raises :class:`InvalidInput` without both SMS consents or when the provider cannot buy
    numbers.
    """
    principal.require("org_admin", doing="get phone numbers")
    org = await organisation_of(session, principal)
    if not consents_given(org):
        raise InvalidInput("Give both SMS consents first: they are what allows OpenVisit to "
                           "send SMS for your organisation.", details={"field": "consents"})
    provider = app.settings.sms_provider
    # Refuses providers that cannot buy numbers, before any row is written.
    providers.number_provider(app, provider)
    number = PhoneNumber(organisation_id=org.id, provider=provider, state="requested",
                         progress=0, verification_status="unverified")
    session.add(number)
    await session.flush()
    await _enqueue_step(session, number, step=STEPS[0][0], delay=0.0)
    await record(session, actor=principal.actor, action="number.request", obj=number,
                 organisation_id=org.id)
    return number


async def _enqueue_step(session: AsyncSession, number: PhoneNumber, *, step: str,
                        delay: float) -> None:
    await enqueue(session, JOB_KIND, payload={"number_id": str(number.id), "step": step},
                  idempotency_key=f"{JOB_KIND}:{number.id}:{step}",
                  due_at=utcnow() + timedelta(seconds=delay), max_attempts=MAX_ATTEMPTS)


async def run_step(session: AsyncSession, *, app: AppContext, number_id: uuid.UUID, step: str,
                   idempotency_key: str) -> None:
    """Run one provisioning step and enqueue the next (the job handler's body).

    A step already done (its progress reached) is skipped, so a re-run job does nothing
    twice. Provider errors propagate: the job retries those that are not permanent.
    """
    number = await session.get(PhoneNumber, number_id)
    if number is None or number.state in ("active", "failed", "released"):
        return
    names = [s[0] for s in STEPS]
    index = names.index(step)
    done_at = STEPS[index][1]
    if number.progress >= done_at:
        return
    provider = providers.number_provider(app, number.provider)
    number.state = "provisioning"
    if step == "search":
        exclude = await repository.taken_numbers(session, prefix="+")
        number.e164 = await provider.search(country=await _country(session, number),
                                            exclude=exclude)
    elif step == "purchase":
        assert number.e164 is not None
        number.provider_ref = await provider.purchase(e164=number.e164,
                                                      idempotency_key=idempotency_key)
    elif step == "configure":
        assert number.e164 is not None and number.provider_ref is not None
        await provider.configure(provider_ref=number.provider_ref, e164=number.e164)
    else:
        assert number.e164 is not None and number.provider_ref is not None
        number.verification_status = await provider.verification(
            provider_ref=number.provider_ref, e164=number.e164)
        number.state = "active"
    number.progress = done_at
    await session.flush()
    if index + 1 < len(STEPS):
        await _enqueue_step(session, number, step=names[index + 1], delay=provider.step_delay())
    else:
        await record(session, actor="system", action="number.provisioned", obj=number,
                     organisation_id=number.organisation_id)


async def _country(session: AsyncSession, number: PhoneNumber) -> str:
    org = await session.get(Organisation, number.organisation_id)
    return org.default_phone_region if org is not None else "US"


async def fail(session: AsyncSession, *, number_id: uuid.UUID, message: str) -> None:
    """Mark provisioning failed with a message the admin reads on the progress page."""
    number = await session.get(PhoneNumber, number_id)
    if number is None or number.state in ("active", "released"):
        return
    number.state = "failed"
    number.error = message[:500]
    await session.flush()
    await record(session, actor="system", action="number.failed", obj=number,
                 organisation_id=number.organisation_id)


async def register_existing(session: AsyncSession, *, app: AppContext, principal: Principal,
                            text: str) -> PhoneNumber:
    """Register a number the organisation already has at its provider (active at once).

    Raises :class:`InvalidInput` for text that is not a valid phone number and
    :class:`Conflict` when the number is already registered.
    """
    principal.require("org_admin", doing="add phone numbers")
    org = await organisation_of(session, principal)
    if not consents_given(org):
        raise InvalidInput("Give both SMS consents first.", details={"field": "consents"})
    try:
        parsed = phonenumbers.parse(text.strip(), org.default_phone_region)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        raise InvalidInput(f"{text.strip()!r} is not a valid phone number; write it with its "
                           "country code, e.g. +1 202 555 0142.", details={"field": "e164"})
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if await repository.number_by_e164(session, e164) is not None:
        raise Conflict(f"{e164} is already registered.", details={"field": "e164"})
    number = PhoneNumber(organisation_id=org.id, provider=app.settings.sms_provider, e164=e164,
                         state="active", progress=100, verification_status="unknown")
    session.add(number)
    await session.flush()
    await record(session, actor=principal.actor, action="number.register", obj=number,
                 organisation_id=org.id)
    return number


async def set_links(session: AsyncSession, *, principal: Principal, number_id: uuid.UUID,
                    endpoint_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Make ``number`` serve exactly ``endpoint_ids`` (one number may serve many endpoints).

    An endpoint keeps one sending number: linking it here unlinks its previous number.
    Raises :class:`InvalidInput` for a number that is not active or an unknown endpoint.
    """
    principal.require("org_admin", doing="link phone numbers")
    number = await _own_number(session, principal, number_id)
    if endpoint_ids and number.state != "active":
        raise InvalidInput(f"The number is {number.state}; link it once it is active.")
    own = {e.id: e for e in await repository.endpoints_of(session, principal.organisation_id)}
    unknown = [e for e in endpoint_ids if e not in own]
    if unknown:
        raise InvalidInput("Some of the endpoints are not your organisation's.",
                           details={"field": "endpoint_ids"})
    links = await repository.links_of(session, principal.organisation_id)
    before = sorted(str(link.endpoint_id) for link in links if link.phone_number_id == number.id)
    wanted = set(endpoint_ids)
    for link in links:
        mine = link.phone_number_id == number.id
        if (mine and link.endpoint_id not in wanted) or (not mine and link.endpoint_id in wanted):
            await session.delete(link)
    present = {link.endpoint_id for link in links if link.phone_number_id == number.id}
    for endpoint_id in wanted - present:
        session.add(PhoneNumberEndpoint(phone_number_id=number.id, endpoint_id=endpoint_id))
    await session.flush()
    after = sorted(str(e) for e in wanted)
    if after != before:
        await record(session, actor=principal.actor, action="number.link",
                     object_type="phone_number", object_id=str(number.id),
                     before={"endpoints": before}, after={"e164": number.e164, "endpoints": after},
                     organisation_id=principal.organisation_id)
    return sorted(wanted)


async def release(session: AsyncSession, *, principal: Principal, number_id: uuid.UUID) -> None:
    """Stop using a number. Refused while it is linked (so no endpoint silently loses SMS)."""
    principal.require("org_admin", doing="release phone numbers")
    number = await _own_number(session, principal, number_id)
    linked = [link for link in await repository.links_of(session, principal.organisation_id)
              if link.phone_number_id == number.id]
    if linked:
        raise Conflict(f"{number.e164 or 'This number'} still sends SMS for {len(linked)} "
                       "endpoint(s); choose another number for them first.")
    before = snapshot(number)
    number.state = "released"
    number.e164 = None  # frees the unique E.164 for a later registration
    await session.flush()
    await record(session, actor=principal.actor, action="number.release", obj=number,
                 before=before, organisation_id=principal.organisation_id)
