"""The patient's name and date of birth for the clinician's page: read from any Patient an
EHR sends, sealed into that browser's cookie, never readable elsewhere (issue 15 item 2)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import Response

from openvisit.context import AppContext
from openvisit.errors import OutboundError
from openvisit.launch import identity
from openvisit.launch.fhir import EhrRefused


@pytest.mark.parametrize(("names", "shown"), [
    ([{"use": "official", "family": "Ruiz", "given": ["Ana", "María"]}], "Ana María Ruiz"),
    ([{"use": "official", "family": "Ruiz", "given": ["Ana"]},
      {"use": "usual", "text": "Anita Ruiz"}], "Anita Ruiz"),  # usual before official
    ([{"use": "old", "family": "Novák"}, {"family": "Nováková", "given": ["Jana"]}],
     "Jana Nováková"),  # no use beats an old name
    ([{"text": "  Giulia \n Bianchi "}], "Giulia Bianchi"),
    ([{"use": "nickname"}], ""),
    ([{"given": [None, 7, "Li"], "family": 3}], "Li"),  # junk ignored, not fatal
    ([], ""), (None, ""), ("Ana", ""),
])
def test_it_reads_the_name_an_ehr_would_show(names: Any, shown: str) -> None:
    assert identity.display_name({"resourceType": "Patient", "name": names}) == shown


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["name", "given", "family", "text", "use",
                                                       "birthDate", "resourceType"]),
                                      inner, max_size=4), max_leaves=12))
def test_it_never_fails_on_an_odd_patient(value: Any) -> None:
    patient = value if isinstance(value, dict) else {"name": value}
    found = identity.from_patient({**patient, "resourceType": "Patient"})
    assert found is None or (len(found.name) <= identity.MAX_NAME
                             and len(found.birth_date) in (0, 4, 7, 10))


def test_it_keeps_partial_birth_dates_as_given() -> None:
    assert identity.from_patient({"resourceType": "Patient", "birthDate": "1980"}) == \
        identity.PatientIdentity(name="", birth_date="1980")
    full = identity.from_patient({"resourceType": "Patient", "birthDate": "1980-03-12"})
    assert full is not None and str(full.birth()) == "1980-03-12"
    assert identity.from_patient({"resourceType": "Practitioner", "name": [{"text": "X"}]}) \
        is None


class Reader:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def get(self, path: str) -> dict[str, Any]:
        assert path == "Patient/pat-9"
        if isinstance(self.answer, Exception):
            raise self.answer
        return dict(self.answer)


@pytest.mark.parametrize("answer", [
    EhrRefused("no", http_status=403, resource_type="Patient"),
    OutboundError("The EHR's FHIR server did not answer (ReadTimeout)."),
    ValueError("not JSON"),
])
async def test_it_goes_on_without_a_name_when_the_ehr_will_not_say(answer: Any) -> None:
    assert await identity.read(Reader(answer), "Patient/pat-9") is None  # type: ignore[arg-type]


async def test_it_reads_only_a_patient_reference() -> None:
    good = Reader({"resourceType": "Patient", "name": [{"text": "Ana Ruiz"}]})
    assert await identity.read(good, "Patient/pat-9") == identity.PatientIdentity(  # type: ignore[arg-type]
        "Ana Ruiz", "")
    assert await identity.read(good, "Group/pat-9") is None  # type: ignore[arg-type]
    assert await identity.read(good, None) is None  # type: ignore[arg-type]


def _request(cookies: dict[str, str]) -> Request:
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return Request({"type": "http", "headers": [(b"cookie", header.encode())]})


def _set_cookie(ctx: AppContext, visit_id: uuid.UUID, who: identity.PatientIdentity,
                before: str | None = None) -> str:
    response = Response()
    request = _request({identity.COOKIE: before}) if before else None
    identity.set_cookie(response, app=ctx, visit_id=visit_id, identity=who, request=request)
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header and "Path=/;" in header
    # Sealed: no name readable (a space never occurs in the Fernet token's base64).
    assert " Ruiz" not in header and " Number" not in header
    return header.split(";")[0].split("=", 1)[1]


async def test_it_seals_the_identity_for_this_visit_only(ctx: AppContext) -> None:
    visit, other = uuid.uuid4(), uuid.uuid4()
    who = identity.PatientIdentity("Ana Ruiz", "1980-03-12")
    sealed = _set_cookie(ctx, visit, who)
    name = identity.COOKIE
    assert identity.from_cookie(_request({name: sealed}), app=ctx, visit_id=visit) == who
    # Another visit's page, a forged or tampered value, an expired one: nothing shown.
    assert identity.from_cookie(_request({name: sealed}), app=ctx, visit_id=other) is None
    assert identity.from_cookie(_request({name: sealed[:-4] + "AAAA"}), app=ctx,
                                visit_id=visit) is None
    assert identity.from_cookie(_request({name: "x" * 5000}), app=ctx, visit_id=visit) is None
    old = ctx.cipher.encrypt(json.dumps({str(visit): {"n": "Ana Ruiz", "b": "",
                                                      "exp": int(time.time()) - 1}}))
    assert identity.from_cookie(_request({name: old}), app=ctx, visit_id=visit) is None


async def test_it_keeps_one_small_cookie_for_a_busy_clinic_day(ctx: AppContext) -> None:
    """Thirty launches in a day: one cookie, the newest eight visits, well under 4 KB (one
    cookie per visit would have grown the Cookie header past proxies' 8 KB line limit)."""
    visits = [uuid.uuid4() for _ in range(30)]
    sealed: str | None = None
    for n, visit in enumerate(visits):
        sealed = _set_cookie(ctx, visit, identity.PatientIdentity(
            f"Patient Number{n} Withaverylongfamilyname", "1950-01-01"), before=sealed)
    assert sealed is not None and len(sealed) < 3000
    seen = [identity.from_cookie(_request({identity.COOKIE: sealed}), app=ctx, visit_id=v)
            for v in visits]
    assert [s is not None for s in seen] == [False] * 22 + [True] * 8
    assert seen[-1] is not None and seen[-1].name.startswith("Patient Number29")
