"""The visit pages and the clinician's JSON actions over HTTP."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import time_machine

from openvisit.context import AppContext
from openvisit.visits import service
from tests.visits.support import Links, make_appointment, make_visit, seed_org


def page_config(html: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="ov-config">(.*?)</script>', html)
    assert match, html[:500]
    return dict(json.loads(match.group(1)))


async def test_it_serves_the_patient_page_in_the_language_of_the_link_then_the_browser(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    path = "/v/" + Links.token(links.patient)
    spanish = await client.get(path + "?lang=es", headers={"Accept-Language": "cs"})
    assert spanish.status_code == 200
    assert '<html lang="es">' in spanish.text and "Su videoconsulta" in spanish.text
    assert page_config(spanish.text)["role"] == "patient"
    assert "no-store" in spanish.headers["cache-control"]
    assert "script-src 'self'" in spanish.headers["content-security-policy"]
    czech = await client.get(path, headers={"Accept-Language": "cs-CZ,cs;q=0.9,en;q=0.5"})
    assert "Vaše videonávštěva" in czech.text
    strings = re.search(r'id="ov-strings">(.*?)</script>', czech.text)
    assert strings and json.loads(strings.group(1))["role.provider.patient_view"] == "Váš lékař"
    italian = await client.get(path + "?lang=it")
    assert "La sua videovisita" in italian.text
    # Labelled controls and a language picker with real links.
    assert 'aria-label="Call controls"' not in spanish.text  # translated too
    assert 'aria-live="polite"' in spanish.text and 'href="' + path + '?lang=it"' in spanish.text


async def test_it_tells_interpreters_and_guests_what_they_join_as(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    """Issue 15 item 8: invitees got the patient's wording ("Your video visit", "Your
    clinician will let you in") and no role."""
    links = await make_visit(ctx, await seed_org(ctx), interpreters=1)
    async with ctx.transaction() as session:
        visit, _ = await service.resolve_link(session, app=ctx, token=Links.token(links.patient))
        guest = await service.seat_link(session, app=ctx, visit=visit, role="guest")
    interpreter = (await client.get("/v/" + Links.token(links.extra["interpreter1"]))).text
    assert "You are joining as the interpreter" in interpreter
    assert "see you as “Interpreter”" in interpreter
    assert "The clinician will let you in shortly" in interpreter
    assert "Your clinician will let you in" not in interpreter
    assert page_config(interpreter)["role"] == "interpreter"
    spanish = (await client.get("/v/" + Links.token(guest) + "?lang=es")).text
    assert "Va a entrar como invitado" in spanish and "«Invitado»" in spanish
    assert "El profesional sanitario le dejará entrar en breve" in spanish
    patient = (await client.get("/v/" + Links.token(links.patient))).text
    assert "Your video visit" in patient and "data-role-note" not in patient
    assert "Your clinician will let you in shortly" in patient


async def test_it_serves_the_clinician_page_with_the_participants_panel(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    links = await make_visit(ctx, await seed_org(ctx))
    page = await client.get("/v/" + Links.token(links.provider))
    assert page.status_code == 200
    assert "data-roster" in page.text and "End visit for everyone" in page.text
    config = page_config(page.text)
    assert config["role"] == "provider" and config["apiBase"] == f"/api/visits/{links.visit_id}"


async def test_it_shows_a_clear_page_for_a_bad_early_or_ended_link(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx, timezone="Europe/Rome")
    start = datetime(2031, 3, 3, 13, 30, tzinfo=UTC)  # 14:30 in Rome
    appt = await make_appointment(ctx, seeded, start_at=start)
    async with ctx.transaction() as session:
        visit = await service.open_visit(session, app=ctx, appointment=appt)
        url = await service.seat_link(session, app=ctx, visit=visit, role="patient",
                                      language="it")
    path = "/v/" + Links.token(url)
    # A valid link outside its window is a normal page with a next step (issue 15 item 10):
    # no status code in the patient's face, and a reload is not an error.
    with time_machine.travel(start - timedelta(hours=1), tick=False):
        early = await client.get(path)
        calendar = await client.get(path + "/visit.ics")
        api = await client.get(path, headers={"Accept": "application/json"})
    assert early.status_code == 200 and 'data-unavailable="visit_not_open_yet"' in early.text
    assert "È ancora un po&#39; presto" in early.text
    assert "30 minuti prima del suo appuntamento delle 14:30 CET" in early.text
    assert f'href="{path}/visit.ics?lang=it"' in early.text and "410" not in early.text
    assert calendar.status_code == 200 and calendar.headers["content-type"].startswith(
        "text/calendar")
    unfolded = calendar.text.replace("\r\n ", "")
    assert "DTSTART:20310303T133000Z" in unfolded and Links.token(url) in unfolded
    assert api.status_code == 410 and api.json()["error"]["code"] == "visit_not_open_yet"
    async with ctx.transaction() as session:
        await service.set_after_visit_url(session, slug=seeded.organisation.slug,
                                          url="https://portal.example.org/", actor="test")
    with time_machine.travel(start + timedelta(hours=5), tick=False):
        over = await client.get(path + "?lang=en")
        again = await client.get(path + "?lang=en")
    assert over.status_code == 200 and "This visit has ended" in over.text
    assert again.status_code == 200 and "410" not in over.text
    assert 'href="https://portal.example.org/"' in over.text and "visit.ics" not in over.text
    bogus = await client.get("/v/AAAAAAAAAAAAAAAAAAAAAA.AAAA", headers={"Accept-Language": "es"})
    assert bogus.status_code == 404 and "No encontramos esta visita" in bogus.text
    api = await client.get("/v/nonsense", headers={"Accept": "application/json"})
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"


async def test_it_lets_only_the_visits_clinician_act(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    seeded = await seed_org(ctx)
    links, other = await make_visit(ctx, seeded), await make_visit(ctx, seeded)
    base = f"/api/visits/{links.visit_id}"
    patient_id = str(service.participant_id_of(Links.token(links.patient)))

    def bearer(url: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {Links.token(url)}"}

    assert (await client.post(f"{base}/end")).status_code == 401
    assert (await client.post(f"{base}/end", headers=bearer(links.patient))).status_code == 403
    assert (await client.post(f"{base}/end", headers=bearer(other.provider))).status_code == 403
    assert (await client.post(f"{base}/participants/{patient_id}/admit",
                              headers=bearer(links.provider))).status_code == 409  # not waiting
    invite = await client.post(f"{base}/invites", json={"role": "interpreter", "lang": "it"},
                               headers=bearer(links.provider))
    assert invite.status_code == 201
    body = invite.json()
    assert body["participant"]["role"] == "interpreter"
    assert body["participant"]["state"] == "invited"
    assert body["url"].startswith(ctx.settings.public_url + "/v/")
    bad = await client.post(f"{base}/invites", json={"role": "provider"},
                            headers=bearer(links.provider))
    assert bad.status_code == 422
    roster = await client.get(base, headers=bearer(links.provider))
    assert sorted(p["role"] for p in roster.json()["participants"]) == [
        "interpreter", "patient", "provider"]
    ice = await client.get("/api/visits/ice-servers", headers=bearer(links.patient))
    assert ice.status_code == 200 and ice.json()["iceTransportPolicy"] == "all"
    ended = await client.post(f"{base}/end", headers=bearer(links.provider))
    assert ended.json() == {"id": str(links.visit_id), "status": "ended"}
    after = await client.get("/v/" + Links.token(links.patient))
    assert after.status_code == 200 and 'data-unavailable="visit_ended"' in after.text
    # The clinician gets their own page: reopen it, while that is allowed (issue 15 item 1).
    staff = await client.get("/v/" + Links.token(links.provider))
    assert staff.status_code == 200 and 'data-staff-unavailable="visit_ended"' in staff.text
    assert "Reopen the visit" in staff.text
    api = await client.get("/v/" + Links.token(links.provider),
                           headers={"Accept": "application/json"})
    assert api.status_code == 410 and api.json()["error"]["details"]["reopen_until"]


async def test_it_makes_a_demo_visit_outside_production(
    client: httpx.AsyncClient, ctx: AppContext,
) -> None:
    page = await client.get("/visits/demo")
    assert page.status_code == 200
    urls = re.findall(r'href="(http[^"]+/v/[^"]+)"', page.text)
    assert len(urls) == 2
    for url in urls:
        assert (await client.get(url.split(ctx.settings.public_url, 1)[1])).status_code == 200
