"""Synthetic seed data: one clinic, three practitioners, ten patients, today's appointments.

Every name, phone number and e-mail is made up: surnames are words such as "Sample" or
"Placeholder", phone numbers sit in the +1 555-0100..0199 range reserved for fiction, e-mail
addresses use ``example.org`` (RFC 2606). Ids are stable (``org-1``, ``loc-1``, ``prac-1..3``,
``pat-1..10``, ``appt-1..21``, ``enc-1..21``) and the appointment times are rebuilt for the
given day in the sandbox's local time zone.

Schedule: ``appt-1``..``appt-20`` every 30 minutes from 08:00 to 17:30, patients and
practitioners in rotation; ``appt-21`` is a "drop-in" at the half hour the sandbox seeded, so
there is always a visit inside OpenVisit's join window whenever a newcomer tries it.

In demo mode a round tag goes into the appointment and encounter ids (``appt-<tag>-7``,
``enc-<tag>-7``) so each round is new to OpenVisit (see :mod:`openvisit.sandbox.demo`).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

Resource = dict[str, Any]

CLINIC_NAME = "Sandbox Family Clinic"
MRN_SYSTEM = "urn:openvisit:sandbox:mrn"
STAFF_SYSTEM = "urn:openvisit:sandbox:staff-id"
CSN_SYSTEM = "urn:openvisit:sandbox:csn"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SLOTS = 20
DROP_IN = SLOTS + 1

# (given, family, gender, birth date, BCP 47 language)
PATIENTS: tuple[tuple[str, str, str, str, str], ...] = (
    ("Alex", "Sample", "female", "1984-03-12", "en-US"),
    ("Blake", "Example", "male", "1971-11-02", "en-US"),
    ("Casey", "Testperson", "female", "1992-06-25", "es"),
    ("Dana", "Placeholder", "other", "1958-01-30", "en-US"),
    ("Emery", "Demo", "male", "2001-09-14", "cs"),
    ("Finley", "Fictional", "female", "1966-04-08", "it"),
    ("Gray", "Mockwell", "male", "1989-12-19", "en-US"),
    ("Harper", "Synthetic", "female", "1977-07-03", "en-US"),
    ("Indigo", "Sandbox", "unknown", "2010-02-22", "es"),
    ("Jordan", "Notreal", "male", "1949-10-11", "en-US"),
)
# (given, family)
PRACTITIONERS: tuple[tuple[str, str], ...] = (
    ("Morgan", "Example"),
    ("Riley", "Specimen"),
    ("Quinn", "Prototype"),
)
REASONS = ("Follow-up", "Medication review", "Lab results", "New concern", "Annual check")


def patient_name(index: int) -> str:
    given, family, *_ = PATIENTS[index - 1]
    return f"{given} {family}"


def practitioner_name(index: int) -> str:
    given, family = PRACTITIONERS[index - 1]
    return f"Dr. {given} {family}"


def visit_id(k: int, round_tag: str | None = None) -> str:
    """The id suffix of seeded visit ``k``: ``7``, or ``<tag>-7`` in a demo round."""
    return f"{round_tag}-{k}" if round_tag else str(k)


def build_seed(*, day: date, tz: tzinfo, now: datetime,
               round_tag: str | None = None) -> list[Resource]:
    """All seed resources for ``day``; times are local to ``tz``, ``now`` places the drop-in;
    ``round_tag`` (demo mode) makes the appointment and encounter ids new."""
    resources: list[Resource] = [_organization(), _location(), _video_service()]
    resources += [_practitioner(i) for i in range(1, len(PRACTITIONERS) + 1)]
    resources += [_patient(i) for i in range(1, len(PATIENTS) + 1)]
    first = datetime.combine(day, time(8, 0), tzinfo=tz)
    for k in range(1, SLOTS + 1):
        start = first + timedelta(minutes=30 * (k - 1))
        resources += _visit(
            k,
            start=start,
            patient=(k - 1) % len(PATIENTS) + 1,
            practitioner=(k - 1) % len(PRACTITIONERS) + 1,
            virtual=k % 4 != 0,
            arrived=k % 5 in (2, 4),
            round_tag=round_tag,
        )
    local_now = now.astimezone(tz)
    drop_in = local_now.replace(minute=0 if local_now.minute < 30 else 30, second=0, microsecond=0)
    resources += _visit(
        DROP_IN,
        start=drop_in,
        patient=1,
        practitioner=1,
        virtual=True,
        arrived=True,
        reason="Drop-in",
        round_tag=round_tag,
    )
    return resources


def _csn(k: int, round_tag: str | None) -> str:
    return f"CSN-{round_tag}-{9000 + k}" if round_tag else f"CSN-{9000 + k}"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _organization() -> Resource:
    return {
        "resourceType": "Organization",
        "id": "org-1",
        "active": True,
        "name": CLINIC_NAME,
        "telecom": [{"system": "phone", "value": "+1 202 555 0100", "use": "work"}],
    }


def _location() -> Resource:
    return {
        "resourceType": "Location",
        "id": "loc-1",
        "status": "active",
        "name": CLINIC_NAME,
        "mode": "instance",
        "managingOrganization": {"reference": "Organization/org-1"},
        "address": {"line": ["1 Example Way"], "city": "Sampleton", "country": "US"},
    }


def _video_service() -> Resource:
    return {
        "resourceType": "HealthcareService",
        "id": "hs-video",
        "active": True,
        "name": "Sandbox video visits",
        "providedBy": {"reference": "Organization/org-1"},
        "location": [{"reference": "Location/loc-1"}],
    }


def _practitioner(i: int) -> Resource:
    given, family = PRACTITIONERS[i - 1]
    return {
        "resourceType": "Practitioner",
        "id": f"prac-{i}",
        "active": True,
        "identifier": [{"system": STAFF_SYSTEM, "value": f"SBX-STAFF-{i}"}],
        "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Dr."]}],
        "telecom": [
            {
                "system": "email",
                "value": f"{given.lower()}.{family.lower()}@example.org",
                "use": "work",
            }
        ],
    }


def _patient(i: int) -> Resource:
    given, family, gender, birth, language = PATIENTS[i - 1]
    return {
        "resourceType": "Patient",
        "id": f"pat-{i}",
        "active": True,
        "identifier": [
            {
                "use": "usual",
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
                "system": MRN_SYSTEM,
                "value": f"SBX-{1000 + i}",
            }
        ],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "telecom": [
            {"system": "phone", "value": f"+1 202 555 {100 + i:04d}", "use": "mobile"},
            {"system": "email", "value": f"{given.lower()}.{family.lower()}@example.org"},
        ],
        "gender": gender,
        "birthDate": birth,
        "communication": [
            {
                "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]},
                "preferred": True,
            }
        ],
        "managingOrganization": {"reference": "Organization/org-1"},
        "generalPractitioner": [
            {"reference": f"Practitioner/prac-{(i - 1) % len(PRACTITIONERS) + 1}"}
        ],
    }


def _visit(
    k: int,
    *,
    start: datetime,
    patient: int,
    practitioner: int,
    virtual: bool,
    arrived: bool,
    reason: str | None = None,
    round_tag: str | None = None,
) -> list[Resource]:
    vid = visit_id(k, round_tag)
    end = start + timedelta(minutes=30)
    kind = "Video visit" if virtual else "Office visit"
    appointment: Resource = {
        "resourceType": "Appointment",
        "id": f"appt-{vid}",
        "identifier": [{"system": CSN_SYSTEM, "value": _csn(k, round_tag)}],
        "status": "arrived" if arrived else "booked",
        "serviceCategory": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/service-category",
                        "code": "17",
                        "display": "General Practice",
                    }
                ]
            }
        ],
        "serviceType": [{"text": kind}],
        "description": reason or REASONS[(k - 1) % len(REASONS)],
        "start": _iso(start),
        "end": _iso(end),
        "minutesDuration": 30,
        "participant": [
            {
                "actor": {"reference": f"Patient/pat-{patient}", "display": patient_name(patient)},
                "required": "required",
                "status": "accepted",
            },
            {
                "actor": {
                    "reference": f"Practitioner/prac-{practitioner}",
                    "display": practitioner_name(practitioner),
                },
                "required": "required",
                "status": "accepted",
            },
            {
                "actor": {"reference": "Location/loc-1", "display": CLINIC_NAME},
                "required": "information-only",
                "status": "accepted",
            },
        ],
    }
    encounter: Resource = {
        "resourceType": "Encounter",
        "id": f"enc-{vid}",
        "identifier": [{"system": CSN_SYSTEM, "value": _csn(k, round_tag)}],
        "status": "planned",
        "class": (
            {"system": ACT_CODE, "code": "VR", "display": "virtual"}
            if virtual
            else {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"}
        ),
        "subject": {"reference": f"Patient/pat-{patient}"},
        "participant": [
            {
                "type": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "PPRF",
                                "display": "primary performer",
                            }
                        ]
                    }
                ],
                "individual": {"reference": f"Practitioner/prac-{practitioner}"},
            }
        ],
        "appointment": [{"reference": f"Appointment/appt-{vid}"}],
        "serviceProvider": {"reference": "Organization/org-1"},
        "location": [{"location": {"reference": "Location/loc-1"}}],
    }
    return [appointment, encounter]
