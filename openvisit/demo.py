"""``openvisit demo-setup``: make the demo's organisation ready in one idempotent step.

``make demo`` (scripts/demo.sh) calls it before serving, so a newcomer's first start needs no
portal work: the sandbox EHR registered as an approved test endpoint, the sandbox's scheduling
feed accepted (its HL7 sender, :data:`openvisit.sandbox.demo.SENDER`), its department code
named for patients in each language, both SMS consents, a
sending number on the outbox provider (nothing leaves the machine), confirmations on, and
write-back into the sandbox on (:data:`DEMO_WRITEBACK`: the sandbox's chart page shows what a
visit wrote; its token is a backend-services one for the client ``openvisit``, which
``openvisit sandbox`` registers with OpenVisit's JWKS and ``system/`` scopes). Every
step goes through the same services the portal and the CLI use, so each is audited (actor
``cli``) and validated the same way. A second run changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import add_endpoint, list_endpoints
from openvisit.feed.commands import configure_feed
from openvisit.feed.service import hl7_options
from openvisit.notify import departments
from openvisit.notify.commands import (
    NotificationChanges,
    configure_notifications,
    principal_for,
    set_consents,
)
from openvisit.portal.repository import organisation_number
from openvisit.portal.signin.service import get_or_create_organisation
from openvisit.portal.sms import numbers
from openvisit.sandbox.demo import DEPARTMENT_CODE, SENDER
from openvisit.writeback import service as writeback
from openvisit.writeback.settings import OPTIONS_KEY, settings_of

#: What patients read for the sandbox's department code, per language.
DEPARTMENT_NAMES = {"": "Family medicine", "es": "Medicina familiar",
                    "cs": "Všeobecné lékařství", "it": "Medicina generale"}
#: The demo's sending number: a fictional 555-01xx number (NANPA reserves them for fiction).
DEMO_NUMBER = "+12025550199"
#: What the demo writes back into the sandbox, so its chart page (/ehr/chart/<appointment>)
#: shows the visit: the AuditEvents, the Encounter, Appointment.status, the device test, a
#: Communication per message sent and one when the patient arrives in the lobby.
DEMO_WRITEBACK = {"enabled": True, "appointment_status": True, "patient_arrived": True}


@dataclass(frozen=True, kw_only=True)
class DemoSetup:
    """What the demo set up, for the start-up message."""

    organisation_slug: str
    endpoint_id: uuid.UUID
    sender: str
    number: str
    writeback: bool


async def prepare(app: AppContext, *, sandbox_url: str, slug: str, name: str,
                  timezone: str) -> DemoSetup:
    """Set up (or leave as it is) the demo organisation ``slug`` for the sandbox at
    ``sandbox_url``; ``timezone`` is the sandbox's IANA zone (the endpoint's local times)."""
    fhir_base = f"{sandbox_url.rstrip('/')}/fhir"
    sender = "^".join(SENDER)
    async with app.transaction() as session:
        org = await get_or_create_organisation(session, slug, display_name=name)
        if org.display_name == slug:
            org.display_name = name
        org.default_phone_region = org.default_phone_region or "US"
        endpoint = next((e for e in await list_endpoints(session)
                         if e.fhir_base == fhir_base and e.organisation_id == org.id), None)
        if endpoint is None:
            endpoint = await add_endpoint(
                session, app=app, organisation=org, fhir_base=fhir_base, environment="test",
                vendor="generic", client_id="openvisit", name="Sandbox EHR", approved=True,
                timezone=timezone, actor="cli",
            )
        if sender not in hl7_options(endpoint).get("senders", []):
            await configure_feed(session, endpoint=endpoint, actor="cli", senders=[sender])
        # Only where nothing is set yet: an admin who changed it in the portal keeps that.
        if OPTIONS_KEY not in (endpoint.options or {}):
            await writeback.update_settings(session, endpoint=endpoint, data=DEMO_WRITEBACK,
                                            actor="cli")
        writes_back = settings_of(endpoint).enabled
        endpoint_id, org_id, principal = endpoint.id, org.id, principal_for(org)
        named = await departments.entries(session, organisation_id=org_id)
        if not any(entry.code == DEPARTMENT_CODE for entry in named):
            for language, text in DEPARTMENT_NAMES.items():
                await departments.set_name(session, organisation_id=org_id,
                                           code=DEPARTMENT_CODE, name=text,
                                           language=language, actor="cli")
    await set_consents(app, slug=slug, send=True, patients=True)
    async with app.transaction() as session:
        if await organisation_number(session, organisation_id=org_id, e164=DEMO_NUMBER) is None:
            await numbers.register_existing(session, app=app, principal=principal,
                                            text=DEMO_NUMBER)
    await configure_notifications(
        app, endpoint_id=str(endpoint_id),
        changes=NotificationChanges(enabled=True, confirmations=True, number=DEMO_NUMBER),
    )
    return DemoSetup(organisation_slug=slug, endpoint_id=endpoint_id, sender=sender,
                     number=DEMO_NUMBER, writeback=writes_back)
