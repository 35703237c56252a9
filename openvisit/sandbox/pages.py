"""The EHR-like pages: landing, a practitioner's schedule, the patient portal, and the two
launch buttons.

"Start virtual visit" and "Begin visit" are plain form posts (no JavaScript needed): the
server mints an opaque ``launch`` id bound to the user, patient, encounter and appointment and
answers 303 to ``{launch_url}?iss={fhir base}&launch={id}`` — the SMART EHR launch
(SMART App Launch 2.2 §"Launch App: EHR Launch"). Launch ids are 256-bit random values,
reusable until they expire (10 minutes). In demo mode a launch first brings its appointment
to now (:func:`openvisit.sandbox.demo.bring_to_now`), so no row of the schedule dead-ends.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from openvisit.sandbox.demo import bring_to_now
from openvisit.sandbox.runtime import Sandbox, get_sandbox, with_query

log = logging.getLogger(__name__)


def display_name(resource: dict[str, Any]) -> str:
    """A person's display name from their first HumanName (synthetic data only)."""
    names = resource.get("name") or [{}]
    name = names[0] if isinstance(names, list) else {}
    parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
    return " ".join(p for p in parts if p) or resource.get("id", "?")


def _ref_id(reference: str, rtype: str) -> str | None:
    prefix = f"{rtype}/"
    return reference[len(prefix) :] if reference.startswith(prefix) else None


def actor_id(appointment: dict[str, Any], rtype: str) -> str | None:
    """The id of the appointment's first participant of type ``rtype``, or None."""
    for participant in appointment.get("participant", []):
        found = _ref_id(participant.get("actor", {}).get("reference", ""), rtype)
        if found is not None:
            return found
    return None


def _rows(
    sandbox: Sandbox, *, practitioner: str | None = None, patient: str | None = None
) -> list[dict[str, Any]]:
    """Today's appointments for one practitioner or patient, ordered by start, for templates."""
    store = sandbox.store
    encounters = {
        ref.split("/", 1)[1]: enc["id"]
        for enc in store.all("Encounter")
        for ref in (a.get("reference", "") for a in enc.get("appointment", []))
        if ref.startswith("Appointment/")
    }
    rows = []
    now = sandbox.now()
    for appt in store.all("Appointment"):
        pat_id, prac_id = actor_id(appt, "Patient"), actor_id(appt, "Practitioner")
        if (practitioner and prac_id != practitioner) or (patient and pat_id != patient):
            continue
        if (
            pat_id is None
            or prac_id is None
            or appt.get("status") in {"cancelled", "entered-in-error"}
        ):
            continue
        start = datetime.fromisoformat(appt["start"]).astimezone(now.tzinfo)
        pat = store.read("Patient", pat_id) or {"id": pat_id}
        prac = store.read("Practitioner", prac_id) or {"id": prac_id}
        kinds = [s.get("text", "") for s in appt.get("serviceType", [])]
        end = start + timedelta(minutes=appt.get("minutesDuration", 30))
        rows.append(
            {
                "id": appt["id"],
                "start": start,
                "time": start.strftime("%H:%M"),
                "status": appt.get("status", ""),
                "description": appt.get("description", ""),
                "virtual": "Video visit" in kinds,
                "kind": kinds[0] if kinds else "Visit",
                "patient_id": pat_id,
                "patient_name": display_name(pat),
                "patient_birth": pat.get("birthDate", ""),
                "patient_mrn": mrn_of(pat),
                "practitioner_id": prac_id,
                "practitioner_name": display_name(prac),
                "encounter_id": encounters.get(appt["id"]),
                "past": end <= now,
                "current": start <= now < end,
            }
        )
    return sorted(rows, key=lambda r: (r["start"], r["id"]))


def mrn_of(patient: dict[str, Any]) -> str:
    """The patient's first identifier value (the sandbox's MRN), or ""."""
    for ident in patient.get("identifier", []):
        if ident.get("value"):
            return str(ident["value"])
    return ""


_NOTICES = {
    "reset": "Demo reset: a fresh set of today's appointments.",
    "siu-sent": "Booking sent to OpenVisit (SIU^S12): its SMS or e-mail is in OpenVisit's "
                "outbox.",
    "siu-refused": "OpenVisit refused the booking; its log says why.",
    "siu-unreachable": "OpenVisit's HL7 listener did not answer; is `make demo` running?",
    "siu-off": "No HL7 listener configured for this sandbox (--mllp-port).",
}


def _demo(request: Request, sandbox: Sandbox) -> dict[str, Any]:
    """What the pages show in demo mode: the reset button, the booking button, a notice."""
    return {
        "demo": sandbox.demo is not None,
        "siu": sandbox.demo is not None and sandbox.demo.mllp_port is not None,
        "notice": _NOTICES.get(request.query_params.get("notice", "")),
    }


def _people(sandbox: Sandbox, rtype: str) -> list[dict[str, str]]:
    return [{"id": r["id"], "name": display_name(r)} for r in sandbox.store.all(rtype)]


async def landing(request: Request) -> Response:
    sandbox = get_sandbox(request)
    return sandbox.templates.TemplateResponse(
        request,
        "landing.html",
        {
            "practitioners": _people(sandbox, "Practitioner"),
            "patients": _people(sandbox, "Patient"),
            "urls": sandbox.urls,
            "clients": sandbox.clients.all(),
            "today": sandbox.now().strftime("%A %d %B %Y"),
            **_demo(request, sandbox),
        },
    )


async def schedule(request: Request) -> Response:
    sandbox = get_sandbox(request)
    practitioners = _people(sandbox, "Practitioner")
    wanted = request.query_params.get("practitioner") or practitioners[0]["id"]
    current = next((p for p in practitioners if p["id"] == wanted), None)
    if current is None:
        return _not_found(request, "No such practitioner in the sandbox.")
    return sandbox.templates.TemplateResponse(
        request,
        "schedule.html",
        {
            "practitioner": current,
            "practitioners": practitioners,
            "rows": _rows(sandbox, practitioner=wanted),
            "urls": sandbox.urls,
            "today": sandbox.now().strftime("%A %d %B %Y"),
            **_demo(request, sandbox),
        },
    )


async def portal(request: Request) -> Response:
    sandbox = get_sandbox(request)
    patients = _people(sandbox, "Patient")
    wanted = request.query_params.get("patient") or patients[0]["id"]
    current = next((p for p in patients if p["id"] == wanted), None)
    if current is None:
        return _not_found(request, "No such patient in the sandbox.")
    return sandbox.templates.TemplateResponse(
        request,
        "portal.html",
        {
            "patient": current,
            "given": current["name"].split(" ")[0],
            "rows": _rows(sandbox, patient=wanted),
            "urls": sandbox.urls,
            "today": sandbox.now().strftime("%A %d %B %Y"),
            **_demo(request, sandbox),
        },
    )


async def provider_launch(request: Request) -> Response:
    """Mint a provider launch for one of the practitioner's appointments and go to the app."""
    sandbox = get_sandbox(request)
    form = await request.form()
    practitioner, appointment = str(form.get("practitioner", "")), str(form.get("appointment", ""))
    row = next(
        (r for r in _rows(sandbox, practitioner=practitioner) if r["id"] == appointment), None
    )
    if row is None:
        return _not_found(request, "That appointment is not on this practitioner's schedule.")
    if sandbox.demo is not None:
        bring_to_now(sandbox, appointment)
    launch = sandbox.grants.mint_launch(
        kind="provider",
        user=f"Practitioner/{practitioner}",
        patient=row["patient_id"],
        encounter=row["encounter_id"],
        appointment=appointment,
        expires_at=sandbox.now() + sandbox.lifetimes.launch,
    )
    log.info("sandbox.launch_minted kind=provider appointment=%s", appointment)
    return _to_app(sandbox.urls.provider_launch_url, sandbox, launch.launch_id)


async def patient_launch(request: Request) -> Response:
    """Mint a patient launch (user = the Patient) for one of their appointments."""
    sandbox = get_sandbox(request)
    form = await request.form()
    patient, appointment = str(form.get("patient", "")), str(form.get("appointment", ""))
    row = next((r for r in _rows(sandbox, patient=patient) if r["id"] == appointment), None)
    if row is None:
        return _not_found(request, "That appointment does not belong to this patient.")
    if sandbox.demo is not None:
        bring_to_now(sandbox, appointment)
    launch = sandbox.grants.mint_launch(
        kind="patient",
        user=f"Patient/{patient}",
        patient=patient,
        encounter=None,
        appointment=appointment,
        expires_at=sandbox.now() + sandbox.lifetimes.launch,
    )
    log.info("sandbox.launch_minted kind=patient appointment=%s", appointment)
    return _to_app(sandbox.urls.patient_launch_url, sandbox, launch.launch_id)


def _to_app(launch_url: str, sandbox: Sandbox, launch_id: str) -> Response:
    target = with_query(launch_url, params={"iss": sandbox.urls.fhir_base, "launch": launch_id})
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})


def _not_found(request: Request, message: str) -> Response:
    return get_sandbox(request).templates.TemplateResponse(
        request, "error.html", {"title": "Not found", "message": message}, status_code=404
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/", landing, methods=["GET"]),
        Route("/ehr/schedule", schedule, methods=["GET"]),
        Route("/ehr/launch", provider_launch, methods=["POST"]),
        Route("/portal", portal, methods=["GET"]),
        Route("/portal/launch", patient_launch, methods=["POST"]),
    ]
