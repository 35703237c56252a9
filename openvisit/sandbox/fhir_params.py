"""The search parameters the sandbox supports, per resource type (FHIR R4 searchparameter
registry, a subset). Each names its kind (token, reference, date, string) and the element
paths it reads; reference parameters may fix the target type (``patient`` → Patient).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    kind: str  # id | token | reference | date | string
    paths: tuple[str, ...]
    target: str | None = None  # reference parameters: the only allowed target type


def _p(kind: str, *paths: str, target: str | None = None) -> Param:
    return Param(kind, paths, target)


#: Parameters of every resource type (R4 search.html §3.1.1.3 "Parameters for all
#: resources"): ``_tag`` finds what a client tagged, e.g. a write-back's idempotency key.
COMMON_PARAMS: dict[str, Param] = {
    "_id": _p("id", "id"),
    "_tag": _p("token", "meta.tag"),
}

_NAME = ("name",)
SEARCH_PARAMS: dict[str, dict[str, Param]] = {
    "Patient": {
        "identifier": _p("token", "identifier"),
        "name": _p("string", *_NAME),
        "family": _p("string", "name.family"),
        "given": _p("string", "name.given"),
        "birthdate": _p("date", "birthDate"),
        "gender": _p("token", "gender"),
        "active": _p("token", "active"),
    },
    "Practitioner": {
        "identifier": _p("token", "identifier"),
        "name": _p("string", *_NAME),
        "family": _p("string", "name.family"),
        "given": _p("string", "name.given"),
    },
    "Organization": {"identifier": _p("token", "identifier"), "name": _p("string", "name")},
    "Location": {
        "identifier": _p("token", "identifier"),
        "name": _p("string", "name"),
        "organization": _p("reference", "managingOrganization"),
    },
    "Appointment": {
        "patient": _p("reference", "participant.actor", target="Patient"),
        "practitioner": _p("reference", "participant.actor", target="Practitioner"),
        "location": _p("reference", "participant.actor", target="Location"),
        "actor": _p("reference", "participant.actor"),
        "date": _p("date", "start"),
        "status": _p("token", "status"),
        "identifier": _p("token", "identifier"),
        "service-type": _p("token", "serviceType"),
    },
    "Encounter": {
        "patient": _p("reference", "subject", target="Patient"),
        "subject": _p("reference", "subject"),
        "practitioner": _p("reference", "participant.individual", target="Practitioner"),
        "participant": _p("reference", "participant.individual"),
        "appointment": _p("reference", "appointment", target="Appointment"),
        "date": _p("date", "period"),
        "status": _p("token", "status"),
        "class": _p("token", "class"),
        "identifier": _p("token", "identifier"),
    },
    "AuditEvent": {
        "patient": _p("reference", "agent.who", "entity.what", target="Patient"),
        "agent": _p("reference", "agent.who"),
        "entity": _p("reference", "entity.what"),
        "date": _p("date", "recorded"),
        "type": _p("token", "type"),
        "subtype": _p("token", "subtype"),
        "action": _p("token", "action"),
        "outcome": _p("token", "outcome"),
    },
    "Communication": {
        "patient": _p("reference", "subject", target="Patient"),
        "subject": _p("reference", "subject"),
        "encounter": _p("reference", "encounter"),
        "recipient": _p("reference", "recipient"),
        "sender": _p("reference", "sender"),
        "based-on": _p("reference", "basedOn"),
        "status": _p("token", "status"),
        "category": _p("token", "category"),
        "medium": _p("token", "medium"),
        "sent": _p("date", "sent"),
    },
    "Observation": {
        "patient": _p("reference", "subject", target="Patient"),
        "subject": _p("reference", "subject"),
        "encounter": _p("reference", "encounter"),
        "date": _p("date", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
        "status": _p("token", "status"),
        "code": _p("token", "code"),
        "category": _p("token", "category"),
    },
    "HealthcareService": {
        "active": _p("token", "active"),
        "name": _p("string", "name"),
        "organization": _p("reference", "providedBy"),
        "location": _p("reference", "location"),
    },
}
