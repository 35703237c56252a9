"""The FHIR client core: classification, Retry-After, OperationOutcome text, request shapes;
and every resource builder's output valid R4 (fhir.resources)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from openvisit.writeback import fhir
from openvisit.writeback import resources as res


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "ok"), (201, "ok"), (409, "conflict"), (412, "conflict"), (408, "retry"),
    (429, "retry"), (500, "retry"), (503, "retry"), (400, "permanent"), (404, "permanent"),
    (422, "permanent"), (401, "permanent")])
def test_it_classifies_statuses(status: int, outcome: str) -> None:
    assert fhir.classify(status) == outcome


def test_it_reads_retry_after_in_both_forms() -> None:
    now = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
    assert fhir.retry_after_seconds("30") == 30.0
    assert fhir.retry_after_seconds("Wed, 02 Dec 2026 10:01:00 GMT", now=now) == 60.0
    assert fhir.retry_after_seconds("soon") is None
    assert fhir.retry_after_seconds("999999") == fhir.MAX_RETRY_AFTER


def test_it_makes_operation_outcome_readable_and_safe() -> None:
    body = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid", "details": {"text": "Missing property"},
         "expression": ["AuditEvent.agent"]},
        {"severity": "error", "code": "processing", "diagnostics": "token " + "A" * 40}]}
    text = fhir.operation_outcome_text(body)
    assert text.startswith("Missing property (AuditEvent.agent); token [redacted]")
    assert fhir.operation_outcome_text({"resourceType": "Patient"}) == ""


def test_it_builds_the_documented_requests() -> None:
    resource = {"resourceType": "AuditEvent", "id": "1"}
    created = fhir.conditional_create(resource, if_none_exist="_tag=s|k")
    assert (created.method, created.path, created.headers["If-None-Exist"]) == \
        ("POST", "AuditEvent", "_tag=s|k")
    put = fhir.update(resource, version="3")
    assert (put.method, put.path, put.headers["If-Match"]) == ("PUT", "AuditEvent/1", 'W/"3"')
    patch = fhir.patch("Appointment", "9", [{"op": "replace", "path": "/status",
                                             "value": "arrived"}], version="4")
    assert patch.content_type == "application/json-patch+json"
    assert patch.headers["If-Match"] == 'W/"4"'
    assert fhir.etag_version('W/"12"') == "12"


def test_it_builds_valid_r4_for_every_write() -> None:
    at = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    facts = res.Facts(appointment_id="A1", encounter_id="SCH^CSN 1", patient_ref="Patient/p1",
                      practitioner_ref="Practitioner/d1")
    built = [res.audit_event(key=f"k{kind}", event_kind=kind, at=at, facts=facts,
                             agent_ref=res.reference("Patient", "p1"), agent_role="patient")
             for kind in res.AUDIT_EVENTS]
    result = {"passed": True, "camera": "passed", "microphone": "passed", "speaker": "skipped",
              "call": {"status": "passed", "rtt_ms": 20.5, "jitter_ms": 3.0,
                       "packet_loss_pct": 0.0, "frames_decoded": 120}}
    built += [
        res.devicetest_observation(key="d1", at=at, result=result, patient_ref="p1"),
        res.devicetest_communication(key="d2", at=at, result=result, patient_ref=None),
        res.message_communication(key="m1", at=at, facts=facts, channel="sms",
                                  template="reminder"),
        res.patient_arrived_communication(key="p1", at=at, facts=facts, text="waiting"),
        res.encounter_update({"resourceType": "Encounter", "id": "e", "status": "planned",
                              "class": {"code": "AMB"}}, status="finished", started_at=at,
                             ended_at=at)]
    for resource in built:
        res.validate(resource)
    # an HL7 (non-FHIR-id) encounter becomes a logical reference by identifier
    assert built[0]["entity"][1]["what"] == {"type": "Encounter",
                                             "identifier": {"value": "SCH^CSN 1"}}
    observation = built[len(res.AUDIT_EVENTS)]
    codes = [c["code"]["coding"][0]["code"] for c in observation["component"]]
    assert codes[:4] == ["camera", "microphone", "speaker", "call"]
    assert "payload" not in built[-3]  # no message text unless the organisation turns it on
    with pytest.raises(ValueError, match="AuditEvent"):
        res.validate({"resourceType": "AuditEvent", "action": "E"})


def test_it_never_moves_a_finished_encounter_back() -> None:
    done = {"resourceType": "Encounter", "id": "e", "status": "finished",
            "period": {"start": "2026-12-02T10:00:00.000Z", "end": "2026-12-02T10:20:00.000Z"}}
    again = res.encounter_update(done, status="in-progress",
                                 started_at=datetime(2026, 12, 2, 9, tzinfo=UTC), ended_at=None)
    assert again["status"] == "finished" and again["period"] == done["period"]


def test_it_reads_and_refuses_settings() -> None:
    from openvisit.errors import InvalidInput
    from openvisit.models import EhrEndpoint
    from openvisit.writeback.settings import parse, settings_of

    endpoint = EhrEndpoint(vendor="oracle", options={"writeback": {"enabled": True,
                                                                     "devicetest": "off"}})
    settings = settings_of(endpoint)
    assert settings.enabled and settings.devicetest == "off"
    assert settings.profile_for(endpoint) == "oracle"
    assert not settings_of(EhrEndpoint(options={"writeback": {"enabled": "maybe"}})).enabled
    with pytest.raises(InvalidInput, match="devicetest"):
        parse({"devicetest": "fax"})
