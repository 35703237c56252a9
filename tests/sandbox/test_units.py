"""Pure protocol pieces: SMART scopes, PKCE, JSON Patch, FHIR date ranges, seed validity."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from fhir.resources.R4B import get_fhir_model_class

from openvisit.sandbox import pkce, scopes
from openvisit.sandbox.fhir_patch import PatchInvalid, PatchTestFailed, apply_patch
from openvisit.sandbox.fhir_search import date_range
from openvisit.sandbox.seed import build_seed

CET = timezone(timedelta(hours=1))


def test_it_reads_v1_and_v2_scopes() -> None:
    v1 = scopes.parse_resource_scope("user/Patient.read")
    v2 = scopes.parse_resource_scope("patient/Appointment.rs")
    wild = scopes.parse_resource_scope("system/*.*")
    assert v1 is not None and v1.permissions == frozenset("rs")
    assert v2 is not None and v2.context == "patient" and v2.resource_type == "Appointment"
    assert wild is not None and wild.permissions == frozenset("cruds")
    assert scopes.parse_resource_scope("user/Patient.sr") is None  # v2 letters out of order
    assert scopes.parse_resource_scope("patient/Observation.rs?category=x") is None
    assert scopes.parse_resource_scope("openid") is None


def test_it_grants_only_what_the_registration_allows() -> None:
    allowed = ["openid", "launch", "user/*.rs", "patient/Appointment.cruds"]
    requested = [
        "openid",
        "offline_access",
        "user/Patient.read",
        "user/Patient.write",
        "patient/Appointment.rs",
        "patient/Observation.rs?category=vital-signs",
        "openid",
    ]
    assert scopes.grant(requested, allowed=allowed) == [
        "openid",
        "user/Patient.read",
        "patient/Appointment.rs",
    ]
    assert scopes.is_subset(["user/Patient.rs"], wider=["user/*.cruds"])
    assert not scopes.is_subset(["user/Patient.c"], wider=["user/Patient.rs"])


def test_it_checks_pkce_s256_like_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce.s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce.verify_s256(verifier, challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    assert not pkce.verify_s256("short", challenge=pkce.s256("short"))
    assert not pkce.verify_s256(
        verifier + "x", challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_it_applies_json_patch_operations_of_rfc_6902() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "x"}
    out = apply_patch(
        doc,
        operations=[
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "add", "path": "/a/b/0", "value": 0},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "remove", "path": "/a/b/1"},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e~1f"},
            {"op": "test", "path": "/a/b", "value": [0, 2, 3]},
        ],
    )
    assert out == {"a": {"b": [0, 2, 3]}, "c": "y", "e/f": "y"}
    assert doc == {"a": {"b": [1, 2]}, "c": "x"}  # the input is untouched
    with pytest.raises(PatchTestFailed):
        apply_patch(doc, operations=[{"op": "test", "path": "/c", "value": "nope"}])
    for bad in (
        [{"op": "replace", "path": "/missing", "value": 1}],
        [{"op": "remove", "path": "/a/b/9"}],
        [{"op": "frobnicate", "path": "/a"}],
        {"op": "add"},
        [{"op": "move", "from": "/a", "path": "/a/b/x"}],
    ):
        with pytest.raises(PatchInvalid):
            apply_patch(doc, operations=bad)


def test_it_reads_fhir_dates_as_ranges_at_their_precision() -> None:
    assert date_range("2024", tz=CET) == (
        datetime(2024, 1, 1, tzinfo=CET),
        datetime(2025, 1, 1, tzinfo=CET),
    )
    low, high = date_range("2024-02", tz=CET)
    assert (high - low).days == 29
    assert date_range("2024-03-05", tz=UTC)[1] - date_range("2024-03-05", tz=UTC)[0] == timedelta(
        days=1
    )
    low, high = date_range("2024-03-05T10:15:00Z", tz=CET)
    assert low == datetime(2024, 3, 5, 10, 15, tzinfo=UTC) and high - low == timedelta(seconds=1)
    assert date_range("2024-03-05T10:15+02:00", tz=CET)[0].utcoffset() == timedelta(hours=2)


def test_it_seeds_valid_r4_resources_with_stable_ids() -> None:
    now = datetime(2024, 5, 6, 19, 40, tzinfo=CET)
    seed = build_seed(day=now.date(), tz=CET, now=now)
    for resource in seed:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    ids = {(r["resourceType"], r["id"]) for r in seed}
    assert {("Practitioner", f"prac-{i}") for i in range(1, 4)} <= ids
    assert {("Patient", f"pat-{i}") for i in range(1, 11)} <= ids
    appts = {r["id"]: r for r in seed if r["resourceType"] == "Appointment"}
    assert appts["appt-1"]["start"] == "2024-05-06T08:00:00+01:00"
    assert appts["appt-20"]["start"] == "2024-05-06T17:30:00+01:00"
    assert appts["appt-21"]["start"] == "2024-05-06T19:30:00+01:00"  # the drop-in
    assert {a["status"] for a in appts.values()} == {"booked", "arrived"}
    encounters = [r for r in seed if r["resourceType"] == "Encounter"]
    assert len(encounters) == len(appts) and all(e["status"] == "planned" for e in encounters)
    assert {e["class"]["code"] for e in encounters} == {"VR", "AMB"}
    assert build_seed(day=date(2024, 5, 6), tz=CET, now=now) == seed
