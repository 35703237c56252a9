"""Erase one patient (issue 18 item 4): ``openvisit privacy erase-patient``.

Given a patient reference as the EHR sends it (``Patient/123`` from a launch, or the HL7
``<authority>|<MRN>`` of PID-3), remove everything OpenVisit holds about that patient in the
organisation: their appointments (with contacts, notifications, message-log and write-back
rows), the visits of those appointments and every visit in which they had a seat (seats,
events, call-quality samples, chat, write-back rows). A visit shared with another patient
(a group visit) is kept for the others: only this patient's seat loses its reference and its
events, samples and chat, and stays as "Patient N".

The audit entry names the counts only, never the reference (an audit log that kept it
would be one more copy of it).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.errors import InvalidInput, NotFound
from openvisit.logs import get_logger
from openvisit.privacy import repository as repo
from openvisit.privacy.refs import MAX_REF, PatientRefs

log = get_logger(__name__)


@dataclass(frozen=True)
class Erased:
    appointments: int
    visits: int
    seats_forgotten: int


async def erase_patient(session: AsyncSession, *, app: AppContext, slug: str, ref: str,
                        actor: str) -> Erased:
    """Erase patient ``ref`` of organisation ``slug`` in the caller's transaction."""
    ref = PatientRefs.normalise(ref)
    if not ref or len(ref) > MAX_REF:
        raise InvalidInput("Give the patient reference as the EHR sends it, e.g. "
                           "Patient/123 or MRN-AUTHORITY|12345 (at most 255 characters).")
    org = await repo.organisation_by_slug(session, slug)
    if org is None:
        raise NotFound(f"There is no organisation {slug!r}.")
    hashes = app.refs.hashes(ref)
    appointments = await repo.appointments_of_patient(session, organisation_id=org.id,
                                                      hashes=hashes)
    appointment_ids = [a.id for a in appointments]
    visit_ids = set(await repo.visits_of_appointments(session, appointment_ids))
    forgotten = 0
    for seat in await repo.seats_of_patient(session, organisation_id=org.id, hashes=hashes):
        if seat.visit_id in visit_ids:
            continue
        if await repo.other_patient_seats(session, visit_id=seat.visit_id, hashes=hashes):
            await repo.forget_seat(session, seat)
            forgotten += 1
        else:
            visit_ids.add(seat.visit_id)
    visits = await repo.delete_visits(session, sorted(visit_ids))
    n_appointments = await repo.delete_appointments(session, appointment_ids,
                                                    with_messages=True)
    await session.flush()
    erased = Erased(appointments=n_appointments, visits=visits, seats_forgotten=forgotten)
    await record(session, actor=actor, action="privacy.patient_erased",
                 object_type="organisation", object_id=str(org.id), organisation_id=org.id,
                 after=erased.__dict__)
    log.info("patient_erased", organisation_id=str(org.id), **erased.__dict__)
    return erased


async def rekey(app: AppContext, *, batch: int = 500) -> int:
    """Rewrite every stored patient reference's hash and copy under the newest field key
    (after a new key was put first in ``OPENVISIT_FIELD_ENCRYPTION_KEYS``); the number of
    rows changed. Runs in batches, each its own transaction; safe to interrupt and rerun."""
    from openvisit.models.visit import Appointment, Participant

    changed = 0
    for model in (Appointment, Participant):
        after = None
        while True:
            async with app.transaction() as session:
                rows = await repo.rows_with_refs(session, model, after=after, limit=batch)
                for row in rows:
                    changed += app.refs.rekey(row)
                if rows:
                    after = rows[-1].id
            if len(rows) < batch:
                break
    log.info("patient_refs_rekeyed", rows=changed)
    return changed
