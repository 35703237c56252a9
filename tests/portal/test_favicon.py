"""The favicon (issue 15 item 15): one SVG in the brand colour, served from /static, linked by
every page through base.html (portal, patient and clinician pages alike), and /favicon.ico —
which browsers ask for whatever a page links — sent to it."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from xml.etree import ElementTree

import httpx

from openvisit.context import AppContext
from openvisit.models import Appointment, utcnow
from openvisit.visits import service as visits
from tests.notify.support import make_appointment, make_site

FAVICON = "/static/img/favicon.svg"
CSS = Path(__file__).resolve().parents[2] / "openvisit" / "static" / "css" / "openvisit.css"
LINK = re.compile(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">')


async def _visit_links(ctx: AppContext) -> tuple[str, str]:
    """A patient's and a clinician's link to a visit tomorrow."""
    site = await make_site(ctx, slug="favicon", offsets=[])
    appointment_id = await make_appointment(ctx, site, start_at=utcnow() + timedelta(days=1),
                                            change=None)
    async with ctx.transaction() as session:
        appointment = await session.get(Appointment, appointment_id)
        assert appointment is not None
        visit = await visits.open_visit(session, app=ctx, appointment=appointment)
        patient = await visits.seat_link(session, app=ctx, visit=visit, role="patient",
                                         patient_ref=ctx.refs.read(appointment))
        clinician = await visits.seat_link(session, app=ctx, visit=visit, role="provider",
                                           ehr_user_id="Practitioner/7")
    return patient.split("/v/", 1)[1], clinician.split("/v/", 1)[1]


async def test_it_serves_the_favicon_as_svg_in_the_brand_colour(
        client: httpx.AsyncClient) -> None:
    response = await client.get(FAVICON)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    svg = ElementTree.fromstring(response.content)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    brand = re.search(r"--brand: (#[0-9a-f]{6})", CSS.read_text(encoding="utf-8"))
    assert brand is not None
    fills = {el.get("fill") for el in svg.iter() if el.get("fill")}
    assert brand.group(1) in fills, fills


async def test_it_sends_favicon_ico_to_the_svg(client: httpx.AsyncClient) -> None:
    response = await client.get("/favicon.ico")
    assert response.status_code == 308
    assert response.headers["location"] == FAVICON
    assert (await client.get(response.headers["location"])).status_code == 200


async def test_it_links_the_favicon_from_every_kind_of_page(
        ctx: AppContext, client: httpx.AsyncClient) -> None:
    patient, clinician = await _visit_links(ctx)
    pages = {"home": "/", "portal sign-in": "/portal/signin", "patient": f"/v/{patient}",
             "clinician": f"/v/{clinician}", "patient link not found": "/v/not-a-link"}
    linked = {}
    for name, path in pages.items():
        response = await client.get(path)
        assert response.headers["content-type"].startswith("text/html"), (name, path)
        found = LINK.findall(response.text)
        linked[name] = [httpx.URL(href).path for href in found]
    assert linked == {name: [FAVICON] for name in pages}, linked
