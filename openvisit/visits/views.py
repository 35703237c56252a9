"""The visit pages: ``/v/{token}`` (patient, interpreter, guest or clinician) and the demo.

The page is chosen by the seat's role. Language: ``?lang=`` from the link, else the seat's
language, else the browser's ``Accept-Language``. An invalid link is a 404 page; a closed
window or an ended visit is a normal page with a plain explanation and a next step, in that
language: the patient's (come back then, the calendar file, the organisation's page) or the
clinician's (open the room now, reopen a visit ended by mistake: :mod:`.opening`). API
clients still get 410.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import i18n
from openvisit.context import AppContext
from openvisit.errors import Gone, NotFound
from openvisit.i18n import gettext as _
from openvisit.launch import identity
from openvisit.launch.identity import PatientIdentity
from openvisit.models.base import utcnow
from openvisit.models.visit import Participant, Visit
from openvisit.notify import departments, ics, invites, render
from openvisit.signalling.protocol import LOBBY_PRESETS, MAX_CHAT_CHARS, MAX_LOBBY_TEXT_CHARS
from openvisit.visits import opening
from openvisit.visits.lobby import link_opened
from openvisit.visits.roster import STAFF_ROLES
from openvisit.visits.service import (
    appointment_of,
    link_for,
    open_demo_visit,
    organisation_of,
    patient_links,
    resolve_link,
    seat_language,
)
from openvisit.visits.strings import room_strings
from openvisit.visits.tx import transaction
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.errors import wants_json
from openvisit.web.security import page_needs
from openvisit.web.templating import json_for_script, templates

router = APIRouter(include_in_schema=False)

#: Room pages are never cached (they hold the seat's token for the socket's hello).
ROOM_HEADERS = {"Cache-Control": "no-store"}


async def _activate_language(request: Request, session: AsyncSession, token: str,
                             lang: str | None) -> str:
    """Choose and activate the page language before anything is rendered or raised."""
    language = i18n.negotiate(lang, await seat_language(session, token=token),
                              accept_language=request.headers.get("accept-language"))
    i18n.activate(language)
    return language


async def appointment_summary(session: AsyncSession, *, visit: Visit, language: str,
                              default_zone: str) -> dict[str, str] | None:
    """Department and local start time of the visit's appointment, for the patient's page.

    Times are shown in the EHR endpoint's zone (where the clinic is, named on the page),
    formatted for the page's language; the department by the organisation's name for it
    (:mod:`openvisit.notify.departments`). Returns None for visits without an appointment.
    """
    found = await appointment_of(session, visit=visit, default_zone=default_zone)
    if found is None:
        return None
    appointment, zone_name = found
    try:
        zone = ZoneInfo(zone_name)
    except (ValueError, KeyError):
        zone = ZoneInfo("UTC")
    summary: dict[str, str] = {}
    department = await departments.display_name(
        session, organisation_id=visit.organisation_id, department=appointment.department,
        language=language)
    if department:
        summary["department"] = department
    if appointment.start_at is not None:
        local = appointment.start_at.astimezone(zone)
        # "miércoles, 2 de diciembre, 15:30 CET": the locale's order, clock and zone.
        summary["when"] = (f"{i18n.format_day(local, language=language)}, "
                           f"{i18n.format_clock(local, language=language)} "
                           f"{i18n.zone_label(local, language=language)}")
        summary["iso"] = local.isoformat()
    return summary or None


def page_config(ctx: AppContext, *, token: str, visit: Visit, seat: Participant,
                language: str, label_mode: str) -> dict[str, Any]:
    """What the page's script needs; the token goes to the socket's ``hello`` only."""
    return {
        "token": token,
        "participantId": str(seat.id),
        "visitId": str(visit.id),
        "role": seat.role,
        "n": seat.seat_no,
        "lang": language,
        "wsPath": "/ws/visit",
        "apiBase": f"/api/visits/{visit.id}",
        "meshMax": ctx.settings.mesh_max_participants,
        "qualityIntervalMs": 10_000,
        "labelMode": label_mode,
        "iceTransportPolicy": ctx.settings.ice_transport_policy,
        "reopenMinutes": ctx.settings.visit_reopen_minutes,
    }


@router.get("/v/{token}", response_class=HTMLResponse)
async def visit_page(request: Request, token: str, ctx: CtxDep,
                     lang: str | None = None) -> Response:
    """The visit room for whoever holds this link (raises NotFound / Gone, rendered)."""
    async with transaction(ctx) as session:
        language = await _activate_language(request, session, token, lang)
        try:
            visit, seat = await resolve_link(session, app=ctx, token=token)
        except Gone as closed:
            if closed.code not in PATIENT_WINDOW_CODES or wants_json(request):
                raise
            visit, seat = await resolve_link(session, app=ctx, token=token,
                                             check_window_=False)
            if seat.role in STAFF_ROLES:
                org = await organisation_of(session, visit)
                return _staff_unavailable(request, closed, token=token,
                                          frame_ancestors=org.frame_ancestors if org else [])
            await link_opened(session, app=ctx, visit=visit, seat=seat)
            org = await organisation_of(session, visit)
            found = await appointment_of(session, visit=visit,
                                         default_zone=org.timezone if org else "UTC")
            timed = found is not None and found[0].start_at is not None
            return _unavailable(request, closed, token=token, language=language,
                                org_name=org.display_name if org else "",
                                after_visit_url=org.after_visit_url if org else None,
                                calendar=timed and closed.code == "visit_not_open_yet")
        await link_opened(session, app=ctx, visit=visit, seat=seat)
        org = await organisation_of(session, visit)
        appointment = await appointment_summary(session, visit=visit, language=language,
                                                default_zone=org.timezone if org else "UTC")
        staff = seat.role in STAFF_ROLES
        patients = await patient_links(session, app=ctx, visit=visit) if staff else []
        patient = identity.from_cookie(request, app=ctx, visit_id=visit.id) if staff else None
        caregivers_max = (org.patient_guests_max if org and seat.role == "patient" else 0)
        can_send = (staff or bool(caregivers_max)) and await invites.channels_open(
            session, organisation_id=visit.organisation_id, appointment_id=visit.appointment_id)
    label_mode = org.provider_label_mode if org else "role"
    page_needs(request, media=True, frame_ancestors=org.frame_ancestors if org else [])
    config = page_config(ctx, token=token, visit=visit, seat=seat, language=language,
                         label_mode=label_mode)
    template = "visits/provider.html" if staff else "visits/patient.html"
    strings = room_strings()
    return templates.TemplateResponse(
        request, template,
        {
            "config_json": json_for_script(config),
            "strings_json": json_for_script(strings),
            "role": seat.role,
            "seat_no": seat.seat_no,
            "language": language,
            "languages": i18n.LANGUAGES,
            "path": request.url.path,
            "appointment": appointment,
            "patient_links": patients,
            "queue_url": f"/v/{token}/queue",
            "reopen_url": f"/v/{token}/reopen"
            if staff and ctx.settings.visit_reopen_minutes else None,
            "lobby_presets": [(preset, strings[f"lobby.preset.{preset}"])
                              for preset in LOBBY_PRESETS] if staff else [],
            "lobby_text_max": MAX_LOBBY_TEXT_CHARS,
            "chat_max": MAX_CHAT_CHARS,
            "chat_stored": bool(org and org.store_chat),
            "invite_send": can_send,
            "caregivers_max": caregivers_max,
            "patient": patient,
            "patient_birth": _birth(patient, language) if patient else "",
        },
        headers=ROOM_HEADERS,
    )


def _birth(patient: PatientIdentity, language: str) -> str:
    """The date of birth as the page's language writes it ("12 March 1980", "12. března
    1980"); a year or year-month the EHR gave alone, as given."""
    born = patient.birth()
    if born is None:
        return patient.birth_date
    return str(format_date(born, format="long", locale=language))


#: Why a valid patient link does not open the room now; its page is a normal page (200), with
#: a next step, so a reload or a bookmark is never an error.
PATIENT_WINDOW_CODES = frozenset({"visit_not_open_yet", "visit_ended"})


def _unavailable(request: Request, closed: Gone, *, token: str, language: str, org_name: str,
                 after_visit_url: str | None, calendar: bool) -> Response:
    """The patient's "a little early" / "the visit has ended" page."""
    page_needs(request, media=False)
    return templates.TemplateResponse(
        request, "visits/unavailable.html",
        {
            "title": closed.title, "message": closed.message, "code": closed.code,
            "org_name": org_name, "after_visit_url": after_visit_url,
            "calendar_url": f"/v/{token}/visit.ics?lang={language}" if calendar else None,
            "language": language, "languages": i18n.LANGUAGES, "path": request.url.path,
        },
        headers=ROOM_HEADERS,
    )


def _staff_unavailable(request: Request, closed: Gone, *, token: str,
                       frame_ancestors: list[str]) -> Response:
    """The clinician's "not open yet" / "has ended" page: the clinician's wording, and what
    they can do about it (open the room now, or reopen a visit ended by mistake)."""
    page_needs(request, media=False, frame_ancestors=frame_ancestors)
    return templates.TemplateResponse(
        request, "visits/staff_unavailable.html",
        {
            "title": closed.title, "message": closed.message, "code": closed.code,
            "can_open": closed.code == "visit_not_open_yet",
            "can_reopen": bool(closed.details.get("reopen_until")),
            "open_url": f"/v/{token}/open-early", "reopen_url": f"/v/{token}/reopen",
            "queue_url": f"/v/{token}/queue",
        },
        headers=ROOM_HEADERS,
    )


@router.post("/v/{token}/open-early")
async def open_early(request: Request, token: str, ctx: CtxDep) -> Response:
    """The clinician opens the room before the patients' window (403 for any other seat)."""
    i18n.activate(i18n.negotiate(accept_language=request.headers.get("accept-language")))
    async with transaction(ctx) as session:
        await opening.open_early(session, app=ctx, token=token)
    return RedirectResponse(f"/v/{token}", status_code=303)


@router.post("/v/{token}/reopen")
async def reopen(request: Request, token: str, ctx: CtxDep) -> Response:
    """The clinician reopens a visit ended by mistake (409 once too late, 403 for others)."""
    i18n.activate(i18n.negotiate(accept_language=request.headers.get("accept-language")))
    async with transaction(ctx) as session:
        await opening.reopen(session, app=ctx, token=token)
    return RedirectResponse(f"/v/{token}", status_code=303)


@router.get("/v/{token}/visit.ics")
async def visit_calendar(request: Request, token: str, ctx: CtxDep,
                         lang: str | None = None) -> Response:
    """The visit's calendar file with this seat's join link (also before the window opens:
    the "too early" page offers it). 404 for a visit without a time."""
    async with transaction(ctx) as session:
        language = await _activate_language(request, session, token, lang)
        visit, seat = await resolve_link(session, app=ctx, token=token, allow_early=True)
        org = await organisation_of(session, visit)
        found = await appointment_of(session, visit=visit,
                                     default_zone=org.timezone if org else "UTC")
        appointment = found[0] if found else None
        if appointment is None or appointment.start_at is None:
            raise NotFound(_("This visit has no appointment time to put in a calendar."),
                           title=_("No calendar entry"))
        department = await departments.display_name(
            session, organisation_id=visit.organisation_id, department=appointment.department,
            language=language)
    facts = render.Facts(organisation=org.display_name if org else "", department=department,
                         start_at=appointment.start_at, timezone="UTC",
                         link=link_for(ctx, seat))
    body = render.render_calendar(facts, language=language, uid=f"appointment-{appointment.id}",
                                  end_at=appointment.end_at, now=utcnow())
    return Response(body, media_type=ics.CONTENT_TYPE, headers={
        **ROOM_HEADERS, "Content-Disposition": 'attachment; filename="visit.ics"'})


@router.get("/visits/demo", response_class=HTMLResponse)
async def demo_page(request: Request, session: SessionDep, ctx: CtxDep,
                    lang: str | None = None) -> Response:
    """Development only: a fresh ad-hoc visit with a clinician link and a patient link."""
    if ctx.settings.environment == "production":
        raise NotFound("There is nothing at this address.")
    i18n.activate(i18n.negotiate(lang, accept_language=request.headers.get("accept-language")))
    provider, patient = await open_demo_visit(session, app=ctx)
    return templates.TemplateResponse(
        request, "visits/demo.html",
        {"provider_url": link_for(ctx, provider), "patient_url": link_for(ctx, patient)},
        headers={"Cache-Control": "no-store"},
    )

