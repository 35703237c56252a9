"""Launch context resolution from token responses."""

from __future__ import annotations

from typing import Any

import pytest

from openvisit.smart.context import reference_id, resolve_launch_context
from openvisit.smart.errors import LaunchContextMissing
from openvisit.smart.token import TokenResponse


def _token(**context: Any) -> TokenResponse:
    return TokenResponse.model_validate({"access_token": "a", "token_type": "Bearer", **context})


@pytest.mark.parametrize(
    "fhir_context",
    [
        [{"reference": "Appointment/apt-1"}],
        [{"reference": "https://ehr.test/fhir/r4/Appointment/apt-1"}],
        [{"reference": "Appointment/apt-1/_history/4"}],
        [{"reference": "apt-1", "type": "Appointment"}],
        [
            {"reference": "Location/l1"},
            {"identifier": {"value": "x"}, "type": "Appointment"},
            {"reference": "Appointment/apt-1", "role": "https://example.org/role"},
        ],
    ],
)
def test_it_takes_the_appointment_from_fhir_context(fhir_context: list[dict[str, Any]]) -> None:
    context = resolve_launch_context(
        _token(fhirContext=fhir_context, encounter="enc-1", patient="pat-1")
    )
    assert context.appointment_id == "apt-1" and context.primary == "appointment"
    assert (context.encounter_id, context.patient_id) == ("enc-1", "pat-1")


def test_it_falls_back_to_the_encounter_then_the_patient() -> None:
    by_encounter = resolve_launch_context(_token(encounter="enc-1", patient="pat-1"))
    assert by_encounter.primary == "encounter" and by_encounter.appointment_id is None
    from_context = resolve_launch_context(
        _token(fhirContext=[{"reference": "Encounter/enc-2"}], patient="pat-1")
    )
    assert from_context.encounter_id == "enc-2"
    by_patient = resolve_launch_context(_token(patient="Patient/pat-1"))
    assert by_patient.primary == "patient" and by_patient.patient_id == "pat-1"


def test_it_records_the_signed_in_user_as_a_relative_reference() -> None:
    context = resolve_launch_context(
        _token(patient="p"), fhir_user="https://ehr.test/fhir/r4/Practitioner/prac-1"
    )
    assert context.user_ref == "Practitioner/prac-1"
    assert resolve_launch_context(_token(patient="p")).user_ref is None


def test_it_says_when_there_is_nothing_to_start_a_visit_for() -> None:
    with pytest.raises(LaunchContextMissing, match="Start the visit from an appointment"):
        resolve_launch_context(_token(fhirContext=[{"reference": "Location/1"}]))


@pytest.mark.parametrize(
    "context",
    [{"patient": "Smith, John"}, {"fhirContext": [{"reference": "a b", "type": "Appointment"}]}],
)
def test_it_refuses_malformed_ids_without_quoting_them(context: dict[str, Any]) -> None:
    with pytest.raises(LaunchContextMissing, match="not a FHIR id") as caught:
        resolve_launch_context(_token(**context))
    assert "Smith" not in caught.value.message


def test_it_reads_reference_ids_only_for_the_asked_type() -> None:
    assert reference_id("https://x/fhir/Appointment/9", resource_type="Appointment") == "9"
    assert reference_id("Appointment/9", resource_type="Encounter") is None
    assert reference_id("#contained", resource_type="Appointment") is None
