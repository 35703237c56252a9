"""Hand out a visit seat once a launch has said who is signed in and which appointment it is.

Shared by the SMART launch (:mod:`openvisit.launch.service`) and Epic's context link
(:mod:`openvisit.launch.epic`); runs inside the launch's short write transaction, after every
call to the EHR is done.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import nonces
from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.ehr_endpoints.service import LaunchRefused
from openvisit.launch import proof, repository
from openvisit.launch.fhir import AppointmentFacts
from openvisit.launch.identity import PatientIdentity
from openvisit.launch.proof import ProviderProof
from openvisit.logs import get_logger
from openvisit.models import Appointment, EhrEndpoint
from openvisit.smart.state import new_state

log = get_logger(__name__)

Kind = Literal["provider", "patient"]
STATE_TTL = timedelta(minutes=10)


@dataclass(frozen=True)
class LaunchOutcome:
    """Where the browser goes next, and what the launch resolved (for tests and benches)."""

    redirect: str
    appointment_id: uuid.UUID
    visit_id: uuid.UUID
    needs_idp: bool
    ehr_round_trips: int
    #: Seconds spent waiting for the EHR (token, JWKS, FHIR) during this request.
    ehr_seconds: float = 0.0
    #: The patient's name and date of birth for a clinician's page (never stored).
    patient: PatientIdentity | None = None


async def upsert_appointment(
    session: AsyncSession, *, app: AppContext, endpoint: EhrEndpoint, facts: AppointmentFacts,
    source: str,
) -> Appointment:
    """Create or refresh the local copy of an EHR appointment (ids and times only)."""
    appointment = await repository.appointment_by_ehr_id(
        session, endpoint_id=endpoint.id, ehr_appointment_id=facts.ehr_appointment_id
    )
    if appointment is None:
        appointment = Appointment(
            organisation_id=endpoint.organisation_id,
            endpoint_id=endpoint.id,
            ehr_appointment_id=facts.ehr_appointment_id,
            source=source,
        )
        session.add(appointment)
    appointment.status = facts.status
    appointment.start_at = facts.start_at or appointment.start_at
    appointment.end_at = facts.end_at or appointment.end_at
    app.refs.assign(appointment, facts.patient_ref)
    appointment.provider_ehr_id = facts.practitioner_ref or appointment.provider_ehr_id
    appointment.department = facts.department or appointment.department
    appointment.encounter_id = facts.encounter_id or appointment.encounter_id
    await session.flush()
    return appointment


async def enter_visit(
    session: AsyncSession,
    *,
    app: AppContext,
    endpoint: EhrEndpoint,
    appointment: Appointment,
    kind: Kind,
    user_ref: str | None,
    patient_ref: str | None,
    round_trips: int = 0,
    provider_proof: ProviderProof = "ehr_id_token",
    proof_cookie: str | None = None,
    link_window: tuple[datetime, datetime] | None = None,
) -> LaunchOutcome:
    """Open (or find) the appointment's visit and hand out the right seat.

    ``provider_proof="ehr_id_token"`` (SMART): a provider whose EHR user id is not yet linked
    to an IdP subject is sent to the one-time IdP sign-in first (when an IdP is configured);
    afterwards launches go straight to the visit. ``"idp"`` (Epic context link): every
    provider launch signs in with the IdP unless ``proof_cookie`` is a live proof for this
    EHR user; without an IdP it is refused outside development. ``link_window`` is passed to
    :func:`~openvisit.visits.service.open_visit`. Raises :class:`LaunchRefused`.
    """
    from openvisit.visits.service import open_visit, seat_link

    env = {"environment": endpoint.environment}
    if kind == "provider" and not (user_ref and user_ref.startswith("Practitioner/")):
        raise LaunchRefused(
            "The EHR did not say which clinician is signed in (no Practitioner fhirUser). "
            "Ask the EHR analyst to grant OpenVisit the openid and fhirUser scopes.",
            details=env,
        )
    visit = await open_visit(session, app=app, appointment=appointment, link_window=link_window)
    action = f"launch.{kind}"
    if kind == "provider":
        assert user_ref is not None
        needs_idp = await proof.needs_idp(
            session,
            app=app,
            endpoint=endpoint,
            user_ref=user_ref,
            provider_proof=provider_proof,
            proof_cookie=proof_cookie,
        )
        if needs_idp:
            pending = new_state()
            await nonces.put(
                session,
                scope="provider_pending",
                value=pending,
                ttl=STATE_TTL,
                data={
                    "endpoint_id": str(endpoint.id),
                    "ehr_user_id": user_ref,
                    "visit_id": str(visit.id),
                    "proof": provider_proof,
                },
            )
            return LaunchOutcome(
                redirect=f"{app.settings.public_url}/launch/idp?pending={pending}",
                appointment_id=appointment.id,
                visit_id=visit.id,
                needs_idp=True,
                ehr_round_trips=round_trips,
            )
        if provider_proof == "idp" and not app.settings.oidc_issuer:
            # Development only (_needs_idp refuses this elsewhere): keep the demo working, loudly.
            action = "launch.provider_unverified"
            log.warning(
                "launch_provider_unverified",
                endpoint_id=str(endpoint.id),
                visit_id=str(visit.id),
                reason="no_idp_configured",
            )
        url = await seat_link(session, app=app, visit=visit, role="provider", ehr_user_id=user_ref)
    else:
        url = await seat_link(
            session,
            app=app,
            visit=visit,
            role="patient",
            patient_ref=patient_ref or app.refs.read(appointment),
            language=appointment.language,
        )
    await record(
        session,
        actor=f"{kind}:{user_ref or 'unknown'}",
        action=action,
        object_type="visit",
        object_id=str(visit.id),
        organisation_id=endpoint.organisation_id,
    )
    log.info("launch_complete", kind=kind, visit_id=str(visit.id), endpoint_id=str(endpoint.id))
    return LaunchOutcome(
        redirect=url,
        appointment_id=appointment.id,
        visit_id=visit.id,
        needs_idp=False,
        ehr_round_trips=round_trips,
    )
