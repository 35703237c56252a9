"""Epic and Oracle adapters against small in-process fakes that check the documented request
shapes (EHR-SPEC §2, §3) and answer the documented errors (409/412/423/424, 429)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from openvisit.writeback import adapter as a
from openvisit.writeback.epic.adapter import PATH, EpicAdapter
from openvisit.writeback.fhir import JSON_PATCH, FhirClient, FhirWriteError
from openvisit.writeback.oracle.adapter import (
    PATIENT_ROOM,
    PROVIDER_ROOM,
    OracleAdapter,
    status_path,
)
from openvisit.writeback.settings import WritebackSettings

BASE = "https://fhir-ehr.example/r4/tenant"
AT = "2026-12-02T10:00:00+00:00"

Handler = Callable[[httpx.Request], httpx.Response]


def target(handler: Handler, *, options: dict[str, Any] | None = None) -> a.WriteTarget:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return a.WriteTarget(fhir=FhirClient(http, base=BASE, access_token="tok"), http=http,
                         client_id="client-123", access_token="tok", options=options or {},
                         settings=WritebackSettings(enabled=True))


EPIC = {"epic": {"interconnect_url": "https://ic.example/Interconnect-Test/",
                 "connection_status_codes": {"connected": "1", "disconnected": "2"},
                 "vendor_name": "OpenVisit", "external_id_type": "OVSEAT"}}


def connection(kind: str) -> a.Write:
    return a.Write(key=f"ve1.{kind}", what=a.CONNECTION_STATUS, event_kind=kind,
                   payload={"at": AT, "conference_id": "CSN123", "external_id": "Patient/9"})


async def test_it_sends_epics_connection_status_with_its_client_id_header() -> None:
    seen: list[httpx.Request] = []

    def epic(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    adapter = EpicAdapter()
    assert adapter.plan("connected", role="patient", has_encounter=True,
                        settings=WritebackSettings(enabled=True), options=EPIC)[0] == \
        a.CONNECTION_STATUS
    assert a.CONNECTION_STATUS not in adapter.plan(
        "admitted", role="patient", has_encounter=True,
        settings=WritebackSettings(enabled=True), options=EPIC)
    await adapter.write(connection("disconnected"), target(epic, options=EPIC))
    (request,) = seen
    assert request.method == "GET"
    assert request.url.host == "ic.example"
    assert request.url.path == "/Interconnect-Test" + PATH
    assert dict(request.url.params) == {
        "ConferenceID": "CSN123", "ExternalID": "Patient/9", "ExternalIDType": "OVSEAT",
        "VendorName": "OpenVisit", "ConnectionStatus": "2"}
    assert request.headers["Epic-Client-ID"] == "client-123"
    assert request.headers["Authorization"] == "Bearer tok"


async def test_it_retries_epic_after_429_and_gives_up_on_403() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "7"})

    with pytest.raises(FhirWriteError) as caught:
        await EpicAdapter().write(connection("connected"), target(busy, options=EPIC))
    assert caught.value.outcome == "retry" and caught.value.retry_after == 7.0

    def refused(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403)

    with pytest.raises(FhirWriteError) as caught:
        await EpicAdapter().write(connection("connected"), target(refused, options=EPIC))
    assert caught.value.permanent and "Epic-Client-ID" in caught.value.message


class OracleFake:
    """An Oracle R4 Appointment that only takes PATCH with JSON Patch and a matching
    If-Match, along Oracle's transitions; ``script`` answers chosen errors first."""

    TRANSITIONS = {"proposed": {"booked", "cancelled"},
                   "booked": {"arrived", "checked-in", "cancelled"},
                   "arrived": {"checked-in", "cancelled"},
                   "checked-in": {"fulfilled", "cancelled"}}

    def __init__(self, status: str, *, script: list[httpx.Response] | None = None,
                 rooms_reversed: bool = False) -> None:
        rooms = [self.room("r-pat", PATIENT_ROOM), self.room("r-prov", PROVIDER_ROOM)]
        if rooms_reversed:
            rooms.reverse()
        self.resource: dict[str, Any] = {"resourceType": "Appointment", "id": "A1",
                                         "status": status, "meta": {"versionId": "1"},
                                         "contained": rooms}
        self.script = script or []
        self.patches: list[list[dict[str, Any]]] = []

    @staticmethod
    def room(rid: str, kind: str) -> dict[str, Any]:
        return {"resourceType": "HealthcareService", "id": rid, "type": [{"text": kind}],
                "telecom": [{"system": "url", "value": "https://old.example"}]}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/r4/tenant/Appointment/A1"
        assert request.headers["Authorization"] == "Bearer tok"
        if request.method == "GET":
            return httpx.Response(200, json=self.resource,
                                  headers={"ETag": f'W/"{self.resource["meta"]["versionId"]}"'})
        assert request.method == "PATCH"
        assert request.headers["Content-Type"] == JSON_PATCH
        if self.script:
            return self.script.pop(0)
        if request.headers.get("If-Match") != f'W/"{self.resource["meta"]["versionId"]}"':
            return httpx.Response(412, json=outcome("version mismatch"))
        ops = json.loads(request.content)
        self.patches.append(ops)
        for op in ops:
            if op["op"] == "test":
                index = int(op["path"].split("/")[2])
                if self.resource["contained"][index]["id"] != op["value"]:
                    return httpx.Response(409, json=outcome("test failed"))
            elif op["path"] == "/status":
                if op["value"] not in self.TRANSITIONS.get(self.resource["status"], set()):
                    return httpx.Response(422, json=outcome("transition not allowed"))
                self.resource["status"] = op["value"]
            else:
                index = int(op["path"].split("/")[2])
                self.resource["contained"][index]["telecom"][0] = op["value"]
        version = str(int(self.resource["meta"]["versionId"]) + 1)
        self.resource["meta"] = {"versionId": version}
        return httpx.Response(200, json=self.resource, headers={"ETag": f'W/"{version}"'})


def outcome(text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "processing", "details": {"text": text}}]}


def status_write(kind: str) -> a.Write:
    return a.Write(key=f"ve2.{kind}", what=a.APPOINTMENT_STATUS, event_kind=kind,
                   payload={"at": AT, "appointment": {"id": "A1"}})


def test_it_finds_oracles_allowed_paths() -> None:
    assert status_path("booked", "arrived") == ["arrived"]
    assert status_path("arrived", "fulfilled") == ["checked-in", "fulfilled"]
    assert status_path("fulfilled", "fulfilled") == []
    assert status_path("cancelled", "fulfilled") is None


async def test_it_walks_oracles_transitions_with_if_match() -> None:
    fake = OracleFake("arrived")
    await OracleAdapter().write(status_write("ended"), target(fake))
    assert fake.resource["status"] == "fulfilled"
    assert fake.patches == [[{"op": "replace", "path": "/status", "value": "checked-in"}],
                            [{"op": "replace", "path": "/status", "value": "fulfilled"}]]


async def test_it_reads_again_after_412_and_409() -> None:
    fake = OracleFake("booked", script=[httpx.Response(412, json=outcome("stale")),
                                        httpx.Response(409, json=outcome("conflict"))])
    await OracleAdapter().write(status_write("started"), target(fake))
    assert fake.resource["status"] == "arrived"


@pytest.mark.parametrize("status", [423, 424, 503])
async def test_it_retries_later_on_locked_and_failed_dependency(status: int) -> None:
    fake = OracleFake("booked", script=[httpx.Response(status, json=outcome("busy"))])
    with pytest.raises(FhirWriteError) as caught:
        await OracleAdapter().write(status_write("started"), target(fake))
    assert caught.value.outcome == "retry" and not caught.value.permanent
    assert caught.value.ehr_message == "busy"


async def test_it_honours_retry_after_on_429() -> None:
    fake = OracleFake("booked", script=[httpx.Response(429, headers={"Retry-After": "12"})])
    with pytest.raises(FhirWriteError) as caught:
        await OracleAdapter().write(status_write("started"), target(fake))
    assert caught.value.outcome == "retry" and caught.value.retry_after == 12.0


async def test_it_refuses_a_transition_oracle_does_not_allow() -> None:
    fake = OracleFake("cancelled")
    with pytest.raises(FhirWriteError) as caught:
        await OracleAdapter().write(status_write("ended"), target(fake))
    assert caught.value.permanent and "cancelled" in caught.value.message
    assert fake.patches == []


@pytest.mark.parametrize("reversed_rooms", [False, True])
async def test_it_writes_video_links_into_rooms_found_by_type(reversed_rooms: bool) -> None:
    fake = OracleFake("booked", rooms_reversed=reversed_rooms)
    write = a.Write(key="ve3.video_link", what=a.VIDEO_LINK, event_kind="opened", payload={
        "at": AT, "appointment": {"id": "A1"}, "start": "2026-12-02T10:00:00Z",
        "end": "2026-12-02T10:30:00Z",
        "links": {PATIENT_ROOM: "https://ov.example/v/pat", PROVIDER_ROOM:
                  "https://ov.example/v/doc"}})
    await OracleAdapter().write(write, target(fake))
    by_id = {r["id"]: r["telecom"][0] for r in fake.resource["contained"]}
    assert by_id["r-pat"] == {"system": "url", "value": "https://ov.example/v/pat",
                              "period": {"start": "2026-12-02T10:00:00Z",
                                         "end": "2026-12-02T10:30:00Z"}}
    assert by_id["r-prov"]["value"] == "https://ov.example/v/doc"
    (ops,) = fake.patches
    assert ops[0]["op"] == "test" and ops[0]["path"].endswith("/id")
    pat_index = 1 if reversed_rooms else 0
    assert {"op": "replace", "path": f"/contained/{pat_index}/telecom/0",
            "value": by_id["r-pat"]} in ops


async def test_it_refuses_links_longer_than_255() -> None:
    fake = OracleFake("booked")
    write = a.Write(key="ve4.video_link", what=a.VIDEO_LINK, event_kind="opened", payload={
        "at": AT, "appointment": {"id": "A1"},
        "links": {PATIENT_ROOM: "https://ov.example/" + "x" * 250}})
    with pytest.raises(FhirWriteError) as caught:
        await OracleAdapter().write(write, target(fake))
    assert caught.value.permanent and "255" in caught.value.message


async def test_it_signs_the_patient_arrived_webhook_and_retries_on_503() -> None:
    import hashlib
    import hmac

    from openvisit.writeback.generic.adapter import GenericAdapter

    secret = "s" * 40
    got: list[httpx.Request] = []
    answers = [httpx.Response(503), httpx.Response(204)]

    def receiver(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return answers.pop(0)

    settings = WritebackSettings(enabled=True, webhook_url="https://staff.example/hook")
    assert a.ARRIVED_WEBHOOK in GenericAdapter().plan(
        "joined", role="patient", has_encounter=False, settings=settings, options={})
    assert a.ARRIVED_WEBHOOK not in GenericAdapter().plan(
        "joined", role="provider", has_encounter=False, settings=settings, options={})
    http = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    hook_target = a.WriteTarget(fhir=FhirClient(http, base=BASE, access_token=None), http=http,
                                client_id="c", access_token=None, settings=settings,
                                webhook_secret=secret)
    write = a.Write(key="ve9.arrived_webhook", what=a.ARRIVED_WEBHOOK, event_kind="joined",
                    payload={"at": AT, "visit_id": "v1", "appointment": {"id": "A1"}})
    with pytest.raises(FhirWriteError) as caught:
        await GenericAdapter().write(write, hook_target)
    assert caught.value.outcome == "retry"
    await GenericAdapter().write(write, hook_target)
    first, second = got
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    stamp = second.headers["X-OpenVisit-Timestamp"]
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + second.content,
                        hashlib.sha256).hexdigest()
    assert second.headers["X-OpenVisit-Signature"] == f"sha256={expected}"
    assert json.loads(second.content) == {"event": "patient.arrived", "id": write.key,
                                          "visit_id": "v1", "appointment": "A1", "at": AT}
