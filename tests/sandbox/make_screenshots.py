"""Take screenshots of the sandbox EHR pages with Debian's Chromium (Playwright sync API).

Run: ``.venv/bin/python -m tests.sandbox.make_screenshots [OUTDIR]`` from the repository root;
writes ``sandbox-{page}-{desktop,phone}.png`` (default OUTDIR: docs/screenshots); the chart
page twice, with a visit written back (``chart``) and before anything was (``chart-empty``).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from openvisit.sandbox import SandboxClient, create_sandbox_app
from openvisit.sandbox.runtime import Sandbox
from openvisit.writeback import resources as res

from .helpers import REDIRECT, pkce_pair, serve

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}


def write_back_a_visit(sandbox: Sandbox, *, appointment: str, encounter: str, patient: str,
                       practitioner: str) -> None:
    """What OpenVisit writes for one visit (its own resource builders), straight into the
    store: the lobby and visit steps, the Encounter finished, a device test, two messages."""
    facts = res.Facts(appointment_id=appointment, encounter_id=encounter,
                      patient_ref=f"Patient/{patient}",
                      practitioner_ref=f"Practitioner/{practitioner}")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=14)
    pat, doc = {"reference": f"Patient/{patient}"}, {"reference": f"Practitioner/{practitioner}"}
    steps: list[tuple[str, int, dict[str, Any] | None]] = [
        ("connected", 0, pat), ("connected", 95, doc), ("started", 96, None),
        ("admitted", 97, pat), ("disconnected", 431, pat), ("connected", 455, pat),
        ("ended", 790, doc)]
    store = sandbox.store
    store.create(res.message_communication(key="m1", at=t0 - timedelta(hours=2), facts=facts,
                                           channel="sms", template="reminder"))
    store.create(res.devicetest_observation(
        key="d1", at=t0 - timedelta(minutes=20), patient_ref=f"Patient/{patient}",
        result={"passed": True, "camera": "passed", "microphone": "passed",
                "speaker": "skipped", "call": {"status": "passed", "rtt_ms": 38.0,
                                               "jitter_ms": 2.4, "packet_loss_pct": 0.0,
                                               "connect_ms": 812.0, "frames_decoded": 148,
                                               "frame_width": 640, "frame_height": 480,
                                               "candidate_type": "host"}}))
    store.create(res.patient_arrived_communication(
        key="a1", at=t0, facts=facts, text="The patient is waiting in the video visit lobby."))
    for n, (kind, after, agent) in enumerate(steps):
        store.create(res.audit_event(key=f"e{n}", event_kind=kind,
                                     at=t0 + timedelta(seconds=after), facts=facts,
                                     agent_ref=agent, agent_role=None))

    def finished(current: dict[str, Any] | None) -> dict[str, Any]:
        assert current is not None
        return res.encounter_update(current, status="finished",
                                    started_at=t0 + timedelta(seconds=96),
                                    ended_at=t0 + timedelta(seconds=790))

    store.update("Encounter", encounter, finished, if_match=None, allow_create=False)

    def fulfilled(current: dict[str, Any] | None) -> dict[str, Any]:
        assert current is not None
        return {**current, "status": "fulfilled"}

    store.update("Appointment", appointment, fulfilled, if_match=None, allow_create=False)


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    client = SandboxClient(
        client_id="openvisit-demo",
        client_secret="demo-secret-1",
        redirect_uris=[REDIRECT],
        name="OpenVisit",
    )

    def make(base: str) -> object:
        return create_sandbox_app(
            base_url=base,
            clients=[client],
            provider_launch_url="http://127.0.0.1:9/launch",
            patient_launch_url="http://127.0.0.1:9/patient-launch",
        )

    with serve(make) as (base, app), sync_playwright() as pw:
        write_back_a_visit(app.state.sandbox, appointment="appt-1", encounter="enc-1",
                           patient="pat-1", practitioner="prac-1")
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        _, challenge = pkce_pair()
        signin = (
            f"{base}/auth/authorize?response_type=code&client_id=openvisit-demo"
            f"&redirect_uri={REDIRECT}&scope=launch/patient+openid+fhirUser+user/*.rs"
            f"&state=screenshot-state-0123456789&aud={base}/fhir"
            f"&code_challenge={challenge}&code_challenge_method=S256"
        )
        pages = {
            "schedule": f"{base}/ehr/schedule?practitioner=prac-1",
            "portal": f"{base}/portal?patient=pat-1",
            "signin": signin,
            "landing": f"{base}/",
            "chart": f"{base}/ehr/chart/appt-1",
            "chart-empty": f"{base}/ehr/chart/appt-4",
        }
        for name, (width, height) in VIEWPORTS.items():
            context = browser.new_context(
                viewport={"width": width, "height": height},
                is_mobile=name == "phone",
                has_touch=name == "phone",
            )
            page = context.new_page()
            for label, url in pages.items():
                page.goto(url)
                page.screenshot(path=str(outdir / f"sandbox-{label}-{name}.png"), full_page=True)
            context.close()
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"))
