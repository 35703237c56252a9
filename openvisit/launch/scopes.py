"""The SMART scopes OpenVisit asks for: exactly what each launch reads.

A provider launch reads the Appointment or the Encounter (and its Appointment) named by the
launch; a patient launch reads the same and, when the context is missing or refused, searches
the patient's own appointments of the day (:func:`openvisit.launch.fhir.resolve_appointment`).
``launch`` (EHR launch) or ``launch/patient`` (standalone patient launch) asks for the
context; ``openid fhirUser`` for the id_token that says who signed in. Written in SMART v2
letters and spelled in v1 words for servers that only take those (:mod:`openvisit.smart.scopes`).
The integration records of the portal show these lists to the EHR analyst.
"""

from __future__ import annotations

from typing import Literal

from openvisit.smart.discovery import SmartConfiguration
from openvisit.smart.scopes import server_takes_v1, spell

Kind = Literal["provider", "patient"]

EHR_LAUNCH: dict[Kind, tuple[str, ...]] = {
    "provider": ("launch", "openid", "fhirUser", "online_access", "user/Appointment.rs",
                 "user/Encounter.rs", "user/Patient.rs"),
    "patient": ("launch", "openid", "fhirUser", "patient/Appointment.rs",
                "patient/Encounter.rs"),
}
STANDALONE_LAUNCH: dict[Kind, tuple[str, ...]] = {
    "provider": ("openid", "fhirUser", "online_access", "user/Appointment.rs",
                 "user/Encounter.rs"),
    "patient": ("launch/patient", "openid", "fhirUser", "patient/Appointment.rs",
                "patient/Encounter.rs"),
}


def requested(kind: Kind, *, ehr_launch: bool, config: SmartConfiguration | None = None) -> str:
    """The ``scope`` parameter of a launch of ``kind``, spelled for the server of ``config``."""
    wanted = (EHR_LAUNCH if ehr_launch else STANDALONE_LAUNCH)[kind]
    return spell(wanted, v1=config is not None and server_takes_v1(config))


def for_records(kind: Kind) -> str:
    """What the integration record asks the EHR analyst to register (EHR launch, v2)."""
    return spell(EHR_LAUNCH[kind], v1=False)


def for_records_v1(kind: Kind) -> str:
    """The same in SMART v1 words, for EHRs that register v1 scopes."""
    return spell(EHR_LAUNCH[kind], v1=True)
