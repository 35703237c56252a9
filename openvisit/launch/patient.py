"""Who a patient seat is for, and the check that the appointment is theirs.

SMART App Launch STU 2.2 §2.0.7 ("patient" launch context) and §2.0.9 (``fhirUser``: a
Patient, RelatedPerson, Practitioner or PractitionerRole). A patient-facing launch seats
*the patient in context*: the token's ``patient``. The signed-in user (``fhirUser``, when the
id_token carries one) must be that patient or a RelatedPerson acting for them (a parent, a
carer with proxy access); a clinician on the patient route is refused (they use the
clinician's launch). Then the resolved Appointment's patient participant must be that same
patient — OpenVisit never relies on the EHR alone to keep one patient out of another's visit
(a mis-built launch, a proxy switching records, a stale context).

Contract: :func:`seat_patient` returns the ``Patient/<id>`` the seat is for or raises
:class:`PatientMismatch`; :func:`check_appointment_is_theirs` raises it when the appointment
names another patient or none. Messages name the reference types, never ids.
"""

from __future__ import annotations

from openvisit.ehr_endpoints.service import LaunchRefused
from openvisit.launch.fhir import AppointmentFacts
from openvisit.smart.context import LaunchContext

PATIENT_USERS = ("Patient", "RelatedPerson")


class PatientMismatch(LaunchRefused):
    """A patient launch whose signed-in user or appointment is not that patient's."""

    code = "patient_mismatch"


def _refuse(why: str, *, environment: str) -> PatientMismatch:
    return PatientMismatch(
        f"OpenVisit did not open this visit because {why}. A patient seat is given only to the "
        "patient of the appointment (or a related person signed in for them). Check the "
        f"patient launch set-up in the {environment} EHR; clinicians use the clinician launch.",
        title="This visit is for another patient",
        details={"environment": environment},
    )


def seat_patient(context: LaunchContext, *, user_ref: str | None, environment: str) -> str:
    """The ``Patient/<id>`` a patient launch may seat, checked before any FHIR read."""
    user_type, _, user_id = (user_ref or "").partition("/")
    if user_ref and user_type not in PATIENT_USERS:
        raise _refuse(f"the EHR says a {user_type} is signed in, not a patient or a related "
                      "person", environment=environment)
    patient = context.patient_id
    if user_type == "Patient":
        if patient and user_id != patient:
            raise _refuse("the signed-in patient is not the patient in the launch context",
                          environment=environment)
        patient = patient or user_id
    if not patient:
        raise _refuse("the EHR did not say which patient is signed in", environment=environment)
    return f"Patient/{patient}"


def check_appointment_is_theirs(facts: AppointmentFacts, *, patient_ref: str,
                                environment: str) -> None:
    """Refuse unless the appointment's patient participant is ``patient_ref``."""
    if facts.patient_ref is None:
        raise _refuse("the appointment names no patient", environment=environment)
    if facts.patient_ref != patient_ref:
        raise _refuse("the appointment belongs to another patient than the one signed in",
                      environment=environment)
