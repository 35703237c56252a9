"""Demo mode of the sandbox EHR (``openvisit sandbox --demo``, what ``make demo`` runs).

A newcomer tries the demo at any hour, so nothing in it may dead-end on the clock:

* **Any appointment can be started at any time.** Starting one (clinician or patient launch,
  or the "Send booking" button) first moves it to now when it is not about to start or
  running, as a receptionist would rebook a patient who turned up; the schedule says so.
* **A fresh round of appointments on every start and on "Reset demo"**: the appointment and
  encounter ids carry a round tag (``appt-<tag>-7``), so a visit ended in OpenVisit during
  an earlier round never blocks the same row again; patients and practitioners keep their ids.
* **The SMS path**: "Send booking (SIU)" sends an HL7 v2.5.1 SIU^S12 for the appointment over
  MLLP to OpenVisit's listener, from the sender the demo registered (:data:`SENDER`), so the
  confirmation appears in OpenVisit's outbox with the patient's join link.

Everything here is synthetic data; nothing is logged but ids and outcomes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from openvisit.hl7v2 import MllpDecoder, encode_frame
from openvisit.hl7v2.er7 import escape
from openvisit.sandbox.runtime import Sandbox, ensure_seeded, get_sandbox, new_round

log = logging.getLogger(__name__)

#: MSH-3^MSH-4 of the sandbox's scheduling feed; ``make demo`` registers it as an HL7 sender.
SENDER = ("OVSANDBOX", "SANDBOXCLINIC")
#: AIL-3 department code of every seeded appointment (the demo names it in OpenVisit).
DEPARTMENT_CODE = "10501"
#: An appointment this close to its start (or running) is left where it is.
LEAD = timedelta(minutes=20)
#: How far ahead of now a moved appointment starts.
AHEAD = timedelta(minutes=5)


def bring_to_now(sandbox: Sandbox, appointment_id: str) -> bool:
    """Move the appointment to start now unless it is about to start or running.

    Returns True when it moved. The duration is kept; the new start is a few minutes ahead
    (:data:`AHEAD`), so a booking sent for it is still news to the patient (OpenVisit does
    not confirm visits that have already begun) and the join window is open already.
    """
    appointment = sandbox.store.read("Appointment", appointment_id)
    if appointment is None:
        return False
    now = sandbox.now()
    start = datetime.fromisoformat(appointment["start"])
    minutes = int(appointment.get("minutesDuration", 30))
    end = start + timedelta(minutes=minutes)
    if start - LEAD <= now < end:
        return False
    new_start = (now + AHEAD).replace(second=0, microsecond=0)

    def moved(current: dict[str, Any] | None) -> dict[str, Any]:
        assert current is not None
        current["start"] = new_start.isoformat(timespec="seconds")
        current["end"] = (new_start + timedelta(minutes=minutes)).isoformat(timespec="seconds")
        return current

    sandbox.store.update("Appointment", appointment_id, moved, if_match=None, allow_create=False)
    log.info("sandbox.demo_moved_to_now appointment=%s", appointment_id)
    return True


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def _telecom(patient: dict[str, Any]) -> str:
    parts = []
    for point in patient.get("telecom", []):
        value = escape(str(point.get("value", "")))
        if point.get("system") == "phone" and point.get("use") == "mobile":
            parts.append(f"{value.replace(' ', '')}^PRN^CP")
        elif point.get("system") == "email":
            parts.append(f"^NET^Internet^{value}")
    return "~".join(parts)


def _language(patient: dict[str, Any]) -> str:
    for item in patient.get("communication", []):
        for coding in item.get("language", {}).get("coding", []):
            if coding.get("code"):
                return str(coding["code"]).split("-")[0]
    return ""


def siu_s12(sandbox: Sandbox, appointment_id: str, *, control_id: str) -> bytes | None:
    """An HL7 v2.5.1 SIU^S12 (new booking) for one appointment, or None if it is unknown.

    SCH-2 (filler id) is the FHIR Appointment id, the id OpenVisit's launch reads too, so the
    booking and the launch land on one visit. Times are UTC with an explicit offset.
    """
    store = sandbox.store
    appointment = store.read("Appointment", appointment_id)
    if appointment is None:
        return None
    refs = {p["actor"]["reference"].split("/", 1)[0]: p["actor"]["reference"].split("/", 1)[1]
            for p in appointment.get("participant", []) if "actor" in p}
    patient = store.read("Patient", refs.get("Patient", "")) or {}
    practitioner = store.read("Practitioner", refs.get("Practitioner", "")) or {}
    start = datetime.fromisoformat(appointment["start"])
    minutes = int(appointment.get("minutesDuration", 30))
    end = start + timedelta(minutes=minutes)
    name = (patient.get("name") or [{}])[0]
    pname = f"{escape(name.get('family', ''))}^{escape(' '.join(name.get('given', [])))}"
    doctor = (practitioner.get("name") or [{}])[0]
    prac_id = next((i["value"] for i in practitioner.get("identifier", [])), "")
    doc = f"{escape(prac_id)}^{escape(doctor.get('family', ''))}^" \
          f"{escape(' '.join(doctor.get('given', [])))}"
    mrn = next((i["value"] for i in patient.get("identifier", [])), patient.get("id", ""))
    app_name, facility = SENDER
    s, e = _ts(start), _ts(end)
    segments = [
        f"MSH|^~\\&|{app_name}|{facility}|OPENVISIT|OPENVISIT|{_ts(sandbox.now())}||SIU^S12^SIU_S12|"
        f"{control_id}|P|2.5.1",
        f"SCH||{escape(appointment_id)}^{app_name}|||||ROUTINE^Routine|VIDEO^Video visit|"
        f"{minutes}|MIN|^^{minutes}^{s}^{e}|||||{doc}|||||||||Booked^Booked",
        f"TQ1|1||||||{s}|{e}",
        f"PID|1||{escape(mrn)}^^^SBX^MR||{pname}||{patient.get('birthDate', '').replace('-', '')}"
        f"||||||{_telecom(patient)}||{_language(patient)}",
        f"PV1|1|O|{DEPARTMENT_CODE}^^^SANDBOXCLINIC",
        "RGS|1|A",
        f"AIS|1|A|VIDEO^Video visit|{s}|||{minutes}|MIN||Booked",
        f"AIL|1|A|{DEPARTMENT_CODE}^^^SANDBOXCLINIC|||{s}|||{minutes}|MIN||Booked",
        f"AIP|1|A|{doc}|||{s}|||{minutes}|MIN||Booked",
    ]
    return ("\r".join(segments) + "\r").encode()


async def send_mllp(host: str, port: int, message: bytes, *, timeout: float = 10.0) -> str:
    """Send one message over MLLP and return the acknowledgement code (MSA-1), e.g. ``AA``."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(encode_frame(message))
        await writer.drain()
        decoder = MllpDecoder()
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                raise ConnectionError("the MLLP listener closed the connection without an ACK")
            acks = decoder.feed(chunk)
            if acks:
                break
    finally:
        writer.close()
    for segment in acks[0].decode("utf-8", "replace").split("\r"):
        if segment.startswith("MSA|"):
            return segment.split("|")[1]
    raise ConnectionError("the ACK had no MSA segment")


def _back(request: Request, notice: str) -> Response:
    target = str(request.headers.get("referer") or "/")
    # Only back to our own pages: the referer is the sandbox's own schedule or landing page.
    base = get_sandbox(request).urls.base_url
    if not target.startswith(base):
        target = "/"
    path = target[len(base):] or "/"
    sep = "&" if "?" in path else "?"
    return RedirectResponse(f"{path.split('#')[0]}{sep}notice={notice}", status_code=303)


async def reset(request: Request) -> Response:
    """A fresh round: every appointment of today new again (earlier visits are left alone)."""
    sandbox = get_sandbox(request)
    if sandbox.demo is None:
        return Response("not in demo mode", status_code=404)
    sandbox.demo.round = new_round()
    ensure_seeded(sandbox, force=True)
    log.info("sandbox.demo_reset round=%s", sandbox.demo.round)
    return _back(request, "reset")


async def send_booking(request: Request) -> Response:
    """Move the appointment to now and send its SIU^S12 to OpenVisit's MLLP listener."""
    sandbox = get_sandbox(request)
    demo = sandbox.demo
    if demo is None:
        return Response("not in demo mode", status_code=404)
    form = await request.form()
    appointment = str(form.get("appointment", ""))
    if sandbox.store.read("Appointment", appointment) is None:
        return Response("no such appointment", status_code=404)
    if demo.mllp_port is None:
        return _back(request, "siu-off")
    bring_to_now(sandbox, appointment)
    message = siu_s12(sandbox, appointment, control_id=f"SBX{secrets.token_hex(6)}")
    assert message is not None
    try:
        code = await send_mllp(demo.mllp_host, demo.mllp_port, message)
    except (OSError, ConnectionError, TimeoutError):
        log.warning("sandbox.demo_siu_unreachable appointment=%s", appointment)
        return _back(request, "siu-unreachable")
    log.info("sandbox.demo_siu_sent appointment=%s ack=%s", appointment, code)
    return _back(request, "siu-sent" if code in ("AA", "CA") else "siu-refused")


def routes() -> list[BaseRoute]:
    return [
        Route("/demo/reset", reset, methods=["POST"]),
        Route("/demo/siu", send_booking, methods=["POST"]),
    ]
