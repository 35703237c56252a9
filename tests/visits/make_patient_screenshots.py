"""Screenshots of the patient pages issue 15 changed (items 9, 10, 12) and the clinician's
patient link (item 13), in Spanish and Czech (and the clinician's page in English).

Run: ``.venv/bin/python -m tests.visits.make_patient_screenshots [OUTDIR]`` from the
repository root; writes ``visit-early-{es,cs}``, ``visit-ended-{es,cs}``,
``visit-prejoin-{es,cs}`` and ``visit-provider-patient-link`` at 1280×800 and 390×844
(``-phone``), default OUTDIR docs/screenshots. One process: a fresh SQLite database, the
app on loopback, Debian's Chromium.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from openvisit.context import AppContext
from openvisit.models import utcnow
from openvisit.notify import departments
from openvisit.visits import service
from tests.support.screenshots import SIZES, served
from tests.visits.support import make_appointment, seed_org


async def _links(ctx: AppContext) -> dict[str, str]:
    seeded = await seed_org(ctx, timezone="Europe/Madrid")
    org = seeded.organisation
    async with ctx.transaction() as session:
        for lang, name in (("", "Family medicine"), ("es", "Medicina familiar"),
                           ("cs", "Všeobecné lékařství")):
            await departments.set_name(session, organisation_id=org.id, code="10501",
                                       name=name, language=lang, actor="shots")
        await service.set_after_visit_url(session, slug=org.slug,
                                          url="https://portal.example.org/", actor="shots")
    later = await make_appointment(ctx, seeded, start_at=utcnow() + timedelta(days=1, hours=2))
    soon = await make_appointment(ctx, seeded, start_at=utcnow() + timedelta(minutes=10))
    links: dict[str, str] = {}
    async with ctx.transaction() as session:
        for appt in (later, soon):
            appt_row = await session.get(type(appt), appt.id)
            assert appt_row is not None
            appt_row.department = "10501"
        await session.flush()
        early = await service.open_visit(session, app=ctx, appointment=later)
        links["early"] = await service.seat_link(session, app=ctx, visit=early, role="patient",
                                                 patient_ref="Patient/1")
        now = await service.open_visit(session, app=ctx, appointment=soon)
        links["prejoin"] = await service.seat_link(session, app=ctx, visit=now, role="patient",
                                                   patient_ref="Patient/1")
        links["provider"] = await service.seat_link(session, app=ctx, visit=now,
                                                    role="provider", ehr_user_id="Practitioner/1")
        links["interpreter"] = await service.seat_link(session, app=ctx, visit=now,
                                                       role="interpreter")
        ended = await service.open_adhoc_visit(session, app=ctx, organisation_id=org.id)
        links["ended"] = await service.seat_link(session, app=ctx, visit=ended, role="patient",
                                                 patient_ref="Patient/2")
        ended.status = "ended"
    return links


async def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    async with served(_links) as run:
        links = run.seeded
        for suffix, (width, height) in SIZES.items():
            phone = suffix == "-phone"
            context = await run.browser.new_context(
                viewport={"width": width, "height": height}, is_mobile=phone, has_touch=phone)
            page = await context.new_page()
            for name in ("early", "ended", "prejoin", "interpreter"):
                for lang in ("es", "cs"):
                    await page.goto(f"{links[name]}?lang={lang}")
                    await page.wait_for_load_state("networkidle")
                    await page.screenshot(path=str(outdir / f"visit-{name}-{lang}{suffix}.png"),
                                          full_page=True)
            await page.goto(f"{links['provider']}?lang=en")
            await page.wait_for_load_state("networkidle")
            await page.click(".patient-links summary")
            await page.screenshot(path=str(outdir / f"visit-provider-patient-link{suffix}.png"))
            await context.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots")))
