"""Drive the visit room in Chromium; meant to run inside a private network namespace.

    python tests/e2e/drive_room.py --workdir DIR --scenarios one_to_one,three_way,... \
        [--db-url URL --redis-url URL] [--screenshots DIR]

Starts OpenVisit web process(es) (``python -m openvisit web``), coturn when a scenario needs
TURN, and one Chromium with fake camera and microphone, with one browser context per
participant. Prints one JSON object: scenario name → result (or ``{"error": ...}``). Inside
the namespace only loopback exists, so ICE can only pair on 127.0.0.1 (or via the TURN
relay when the policy is "relay"), which keeps media on this machine and the run stable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from playwright.async_api import Browser, async_playwright

from tests.e2e.drive_a11y import accessibility
from tests.e2e.drive_caregiver import caregiver
from tests.e2e.drive_chat import lobby_and_chat
from tests.e2e.drive_devicetest import devicetest
from tests.e2e.drive_invite import invite_by_sms
from tests.e2e.drive_queue import early_open, queue_alerts, reopen
from tests.e2e.drive_writeback import writeback
from tests.e2e.room_stack import (
    CHROMIUM_ARGS,
    Stack,
    admit_from_panel,
    audit_count,
    decoding,
    new_page,
    on,
    patient_joins,
    seed,
    selected_candidate_types,
    shot,
    token_pid,
)

# ---------------------------------------------------------------------- scenarios


async def one_to_one(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    """Patient joins and waits (Spanish, phone), provider admits, both decode video."""
    base = stack.web("a")
    links = await seed(stack.db_url, stack.redis_url)
    provider = await new_page(browser)
    await provider.goto(on(base, links["provider"]))
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')

    cs = await new_page(browser, phone=True, lang="cs-CZ")
    await cs.goto(on(base, links["patient"]))  # no ?lang=: Accept-Language picks Czech
    await cs.wait_for_function("document.querySelector('video[data-preview]').videoWidth > 0")
    cs_title = await cs.inner_text("#prejoin-title")
    await shot(cs, shots, "patient-prejoin-cs")
    await cs.context.close()

    patient = await new_page(browser, phone=True)
    await patient.goto(on(base, links["patient"]) + "?lang=es")
    await patient.wait_for_function("document.querySelector('video[data-preview]').videoWidth > 0")
    await shot(patient, shots, "patient-prejoin-es")
    await patient.click('[data-action="join"]')
    await patient.wait_for_selector('[data-step="lobby"]:not([hidden])')
    lobby_title = await patient.inner_text("#lobby-title")
    lobby_preview = await patient.evaluate(
        "document.querySelector('video[data-lobby-preview]').videoWidth")
    await asyncio.sleep(1.2)  # let "waiting 0:01" tick for the pictures
    await shot(patient, shots, "patient-lobby-es")
    patient_id = token_pid(links["patient"])
    await provider.wait_for_selector(f'[data-participant="{patient_id}"].state-waiting')
    waiting_text = await provider.inner_text(f'[data-participant="{patient_id}"] .roster-state')
    await shot(provider, shots, "provider-waiting")
    await admit_from_panel(provider, patient_id)
    await patient.wait_for_selector('[data-step="call"]:not([hidden])')
    patient_frames = await decoding(patient, 1)
    provider_frames = await decoding(provider, 1)
    tile_name = await patient.inner_text(".tile-name")
    await shot(patient, shots, "patient-call-es")
    await shot(provider, shots, "provider-call")
    # The controls: mute, camera off and on again (video flows again), the devices dialog.
    await patient.click('.controls [data-action="mic"]')
    muted = await patient.get_attribute('.controls [data-action="mic"]', "aria-pressed")
    await patient.click('.controls [data-action="camera"]')
    await patient.wait_for_selector("video[data-self-video].is-off", state="attached")
    await patient.click('.controls [data-action="camera"]')
    await patient.wait_for_function(
        "!document.querySelector('video[data-self-video]').classList.contains('is-off')")
    provider_after_camera = await decoding(provider, 1)
    await patient.click('.controls [data-action="devices"]')
    await patient.wait_for_selector("#device-dialog[open] select#pick-camera")
    cameras = await patient.eval_on_selector_all("#device-dialog #pick-camera option",
                                                 "els => els.length")
    await patient.click('#device-dialog button[value="close"]')
    await patient.wait_for_selector("#device-dialog:not([open])", state="attached")
    # Leaving shows a clear page, and the provider sees it.
    await patient.click('.controls [data-action="leave"]')
    await patient.wait_for_selector('[data-step="end"]:not([hidden])')
    await provider.wait_for_selector(f'[data-participant="{patient_id}"].state-left')
    for page in (patient, provider):
        await page.context.close()
    return {"cs_title": cs_title, "lobby_title": lobby_title, "lobby_preview_width": lobby_preview,
            "waiting_text": waiting_text, "tile_name": tile_name, "muted": muted,
            "cameras_listed": cameras, "provider_after_camera": provider_after_camera,
            "patient": patient_frames, "provider": provider_frames}


async def three_way(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    """Provider invites an interpreter from the panel; all three decode each other."""
    base = stack.web("a")
    links = await seed(stack.db_url, stack.redis_url)
    provider = await new_page(browser)
    await provider.goto(on(base, links["provider"]))
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')
    await provider.click('[data-invite="interpreter"]')
    await provider.wait_for_selector("[data-invite-result]:not([hidden])")
    invite_url = await provider.input_value("[data-invite-link]")
    await shot(provider, shots, "provider-invite")
    # "End visit for everyone" is on screen (inside the 1280×800 viewport) with the link shown,
    # and the link's copy row above it, not under it.
    end_box = await provider.eval_on_selector('[data-action="end"]', """el => {
      const r = el.getBoundingClientRect();
      const copy = document.querySelector(".copy-row").getBoundingClientRect();
      return {top: r.top, bottom: r.bottom, vh: window.innerHeight,
              copy_top: copy.top, copy_bottom: copy.bottom};
    }""")

    patient = await new_page(browser, phone=True)
    interpreter = await new_page(browser)
    await patient_joins(patient, on(base, links["patient"]))
    await patient_joins(interpreter, on(base, invite_url))
    await admit_from_panel(provider, token_pid(links["patient"]))
    await admit_from_panel(provider, token_pid(invite_url))
    frames = {name: await decoding(page, 2) for name, page in
              (("provider", provider), ("patient", patient), ("interpreter", interpreter))}
    labels = sorted(await patient.eval_on_selector_all(".tile-name",
                                                       "els => els.map(e => e.textContent)"))
    # The clinician leaves: the patient's screen reader hears it (it kept saying
    # "Your clinician is connected").
    await provider.click('.controls [data-action="leave"]')
    await patient.wait_for_function(
        "document.querySelector('[data-live]').textContent.includes('left the call')")
    heard = await patient.inner_text("[data-live]")
    for page in (provider, patient, interpreter):
        await page.context.close()
    return {"frames": frames, "patient_sees": labels, "patient_heard": heard,
            "end_button": end_box}


async def relay_only(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    """iceTransportPolicy "relay" through coturn with TURN REST credentials from OpenVisit."""
    turn = stack.coturn()
    base = stack.web("relay", OPENVISIT_TURN_URLS=json.dumps([turn["url"]]),
                     OPENVISIT_TURN_SECRET=turn["secret"], OPENVISIT_ICE_TRANSPORT_POLICY="relay")
    links = await seed(stack.db_url, stack.redis_url)
    provider = await new_page(browser)
    await provider.goto(on(base, links["provider"]))
    patient = await new_page(browser, phone=True)
    await patient_joins(patient, on(base, links["patient"]))
    await admit_from_panel(provider, token_pid(links["patient"]))
    result = {"patient": await decoding(patient, 1), "provider": await decoding(provider, 1),
              "candidate_types": await selected_candidate_types(patient)
              + await selected_candidate_types(provider)}
    for page in (provider, patient):
        await page.context.close()
    return result


async def staff_relay(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    """OPENVISIT_STAFF_ICE_TRANSPORT_POLICY=relay: the clinician's browser uses TURN only, so
    the patient's browser never receives a clinician candidate that is not a relay."""
    turn = stack.coturn()
    base = stack.web("staff-relay", OPENVISIT_TURN_URLS=json.dumps([turn["url"]]),
                     OPENVISIT_TURN_SECRET=turn["secret"],
                     OPENVISIT_STAFF_ICE_TRANSPORT_POLICY="relay")
    links = await seed(stack.db_url, stack.redis_url)
    provider = await new_page(browser)
    await provider.goto(on(base, links["provider"]))
    patient = await new_page(browser, phone=True)
    await patient_joins(patient, on(base, links["patient"]))
    await admit_from_panel(provider, token_pid(links["patient"]))
    result = {"patient": await decoding(patient, 1), "provider": await decoding(provider, 1),
              "provider_local": await selected_candidate_types(provider),
              "patient_remote": await patient.evaluate("""async () => {
                const types = [];
                for (const link of window.__openvisit.mesh.links.values()) {
                  (await link.pc.getStats()).forEach((r) => {
                    if (r.type === "remote-candidate") types.push(r.candidateType);
                  });
                }
                return types;
              }""")}
    for page in (provider, patient):
        await page.context.close()
    return result


async def lobby_refusal(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    """A waiting patient's page signals the provider directly: refused, audited, not relayed."""
    base = stack.web("a")
    links = await seed(stack.db_url, stack.redis_url)
    provider = await new_page(browser)
    await provider.goto(on(base, links["provider"]))
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')
    await provider.evaluate("""() => { window.__got = [];
      window.__openvisit.signalling.addEventListener("message",
        (e) => window.__got.push(e.detail)); }""")
    patient = await new_page(browser, phone=True)
    await patient_joins(patient, on(base, links["patient"]))
    provider_id = token_pid(links["provider"])
    before = await audit_count(stack.db_url, "signalling.rejected_before_admit")
    errors = await patient.evaluate("""async (to) => {
      const got = [];
      window.__openvisit.signalling.addEventListener("message", (e) => {
        if (e.detail.type === "error") got.push(e.detail); });
      for (const type of ["offer", "candidate"]) {
        window.__openvisit.signalling.send({ type, to, sdp: "v=0\\r\\n",
          candidate: { candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host", sdpMid: "0" } });
      }
      await new Promise((r) => setTimeout(r, 1500));
      return got;
    }""", provider_id)
    got = await provider.evaluate("window.__got")
    after = await audit_count(stack.db_url, "signalling.rejected_before_admit")
    patient_states = await patient.evaluate("window.__openvisit.last")
    for page in (provider, patient):
        await page.context.close()
    return {"errors": [e["code"] for e in errors], "audited": after - before,
            "provider_got_peer_messages": [m for m in got if m["type"] in
                                           ("offer", "answer", "candidate", "restart")],
            "patient_peers": patient_states["peers"] if patient_states else None}


async def two_processes(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    """Provider on web process A, patient on web process B; PostgreSQL + Redis shared.

    Before admit, the waiting patient (on B) tries to signal the provider (on A): refused.
    """
    base_a, base_b = stack.web("A"), stack.web("B")
    links = await seed(stack.db_url, stack.redis_url)
    provider = await new_page(browser)
    await provider.goto(on(base_a, links["provider"]))
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')
    await provider.evaluate("""() => { window.__got = [];
      window.__openvisit.signalling.addEventListener("message",
        (e) => window.__got.push(e.detail)); }""")
    patient = await new_page(browser, phone=True)
    await patient_joins(patient, on(base_b, links["patient"]))
    refused = await patient.evaluate("""async (to) => {
      const got = [];
      window.__openvisit.signalling.addEventListener("message", (e) => {
        if (e.detail.type === "error") got.push(e.detail.code); });
      window.__openvisit.signalling.send({ type: "offer", to, sdp: "v=0\\r\\n" });
      await new Promise((r) => setTimeout(r, 1000));
      return got;
    }""", token_pid(links["provider"]))
    await admit_from_panel(provider, token_pid(links["patient"]))
    result = {"patient": await decoding(patient, 1), "provider": await decoding(provider, 1),
              "bases": [base_a, base_b], "refused": refused}
    got = await provider.evaluate("window.__got")
    patient_id = token_pid(links["patient"])
    # Before admit nothing from the patient reached the provider; after it, the mesh talked.
    result["provider_got_peer_messages"] = [
        m for m in got[: next((i for i, m in enumerate(got) if m["type"] == "state" and any(
            p["id"] == patient_id for p in m.get("peers", []))), len(got))]
        if m["type"] in ("offer", "answer", "candidate", "restart")]
    for page in (provider, patient):
        await page.context.close()
    return result


async def network_drop(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    """The namespace's only network (lo) goes down for a while mid-call, then comes back.

    ICE notices (consent freshness, RFC 7675), the page says "Reconnecting…", the impolite
    side restarts ICE once signalling gets through again, and video flows again.
    """
    base = stack.web("a")
    links = await seed(stack.db_url, stack.redis_url)
    provider = await new_page(browser)
    await provider.goto(on(base, links["provider"]))
    patient = await new_page(browser, phone=True)
    await patient_joins(patient, on(base, links["patient"]))
    await admit_from_panel(provider, token_pid(links["patient"]))
    for page in (provider, patient):
        await decoding(page, 1)
        await page.evaluate("""() => { window.__states = [];
          window.__openvisit.mesh.addEventListener("state",
            (e) => window.__states.push(e.detail.state)); }""")
    subprocess.run(["ip", "link", "set", "lo", "down"], check=True)
    shown = ""
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline and "…" not in shown:
            await asyncio.sleep(0.5)
            shown = await patient.evaluate(
                "document.querySelector('.tile-state')?.textContent || ''")
        await shot(patient, shots, "patient-reconnecting")
        await asyncio.sleep(6)  # long enough for the page to restart ICE, not for "failed"
    finally:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    after = {"patient": await decoding(patient, 1, timeout=60),
             "provider": await decoding(provider, 1, timeout=60)}
    result = {
        "shown_during_drop": shown,
        "states": {name: await page.evaluate("window.__states")
                   for name, page in (("patient", patient), ("provider", provider))},
        "restarts": {name: await page.evaluate(
            "[...window.__openvisit.mesh.links.values()].map((l) => l.restarts)")
            for name, page in (("patient", patient), ("provider", provider))},
        "after": after,
    }
    for page in (provider, patient):
        await page.context.close()
    return result


SCENARIOS = {f.__name__: f for f in (one_to_one, three_way, relay_only, staff_relay,
                                     lobby_refusal, lobby_and_chat,
                                     two_processes, network_drop, devicetest, writeback,
                                     queue_alerts, early_open, reopen, invite_by_sms,
                                     caregiver, accessibility)}


async def migrate_sqlite(db_url: str) -> None:
    from openvisit.db import Database
    from openvisit.migrate import upgrade_async

    db = Database(db_url)
    await upgrade_async(db)
    await db.dispose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = args.db_url or f"sqlite+aiosqlite:///{workdir / 'openvisit.db'}"
    if db_url.startswith("sqlite"):
        await migrate_sqlite(db_url)
    stack = Stack(workdir, db_url, args.redis_url or "")
    shots = Path(args.screenshots) if args.screenshots else None
    results: dict[str, Any] = {}
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            try:
                for name in args.scenarios.split(","):
                    started = time.monotonic()
                    try:
                        results[name] = await SCENARIOS[name](browser, stack, shots)
                    except Exception as exc:
                        results[name] = {"error": f"{type(exc).__name__}: {exc}",
                                         "trace": traceback.format_exc()[-4000:]}
                    results[name]["seconds"] = round(time.monotonic() - started, 1)
            finally:
                await browser.close()
    finally:
        stack.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--scenarios", default="one_to_one")
    parser.add_argument("--db-url", default="")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--screenshots", default="")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
