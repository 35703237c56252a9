"""Drive the visit room in Chromium; meant to run inside a private network namespace.

    python tests/e2e/drive_room.py --workdir DIR --scenarios one_to_one,three_way,... \
        [--db-url URL --redis-url URL --processes 2] [--screenshots DIR]

Starts OpenVisit web process(es) (``python -m openvisit web``), coturn when a scenario needs
TURN, and one Chromium with fake camera and microphone, with one browser context per
participant. Prints one JSON object: scenario name → result (or ``{"error": ...}``). Inside
the namespace only loopback exists, so ICE can only pair on 127.0.0.1 (or via the TURN
relay when the policy is "relay"), which keeps media on this machine and the run stable.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from playwright.async_api import Browser, BrowserContext, Page, async_playwright  # noqa: E402

from tests.support.backend import TEST_KEYS, TEST_SECRET  # noqa: E402

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
MEDIA_TIMEOUT_S = 40.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not open: {log.read_text(errors='replace')[-3000:]}")


@dataclass
class Stack:
    """The background processes of one run; stopped by pid at the end."""

    workdir: Path
    db_url: str
    redis_url: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    turn: dict[str, Any] | None = None
    bases: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
        env.update(
            OPENVISIT_ENVIRONMENT="test", OPENVISIT_DATABASE_URL=self.db_url,
            OPENVISIT_REDIS_URL=self.redis_url, OPENVISIT_SECRET_KEY=TEST_SECRET,
            OPENVISIT_FIELD_ENCRYPTION_KEYS=",".join(TEST_KEYS), OPENVISIT_AUTO_MIGRATE="false",
            OPENVISIT_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO),
        )
        env.update(extra)
        return env

    def web(self, name: str, **extra: str) -> str:
        """The base URL of web process ``name``, started on first use."""
        if name in self.bases:
            return self.bases[name]
        port = free_port()
        log = self.workdir / f"web-{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "openvisit", "web", "--host", "127.0.0.1", "--port", str(port)],
            env=self.env(OPENVISIT_PUBLIC_URL=f"http://127.0.0.1:{port}", **extra),
            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs.append(proc)
        wait_port(port, proc, log)
        self.bases[name] = f"http://127.0.0.1:{port}"
        return self.bases[name]

    def coturn(self) -> dict[str, Any]:
        if self.turn is None:
            port, secret = free_port(), secrets.token_hex(16)
            log = self.workdir / "coturn.log"
            proc = subprocess.Popen(
                [shutil.which("turnserver") or "turnserver", "-n", "--listening-ip=127.0.0.1",
                 "--relay-ip=127.0.0.1", f"--listening-port={port}", "--use-auth-secret",
                 f"--static-auth-secret={secret}", "--realm=openvisit.test",
                 "--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli",
                 "--log-file=stdout", "--simple-log",
                 f"--pidfile={self.workdir / 'turn.pid'}", f"--db={self.workdir / 'turndb'}"],
                stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
            )
            self.procs.append(proc)
            wait_port(port, proc, log)
            self.turn = {"url": f"turn:127.0.0.1:{port}?transport=udp", "secret": secret}
        return self.turn

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---------------------------------------------------------------------- data


async def seed(db_url: str, redis_url: str, *, interpreters: int = 0) -> dict[str, Any]:
    """An appointment starting now with a clinician and a patient seat; returns the links."""
    from datetime import timedelta

    from openvisit.config import Settings
    from openvisit.context import AppContext
    from openvisit.models import Appointment, EhrEndpoint, Organisation
    from openvisit.models.base import utcnow
    from openvisit.visits import service

    settings = Settings(_env_file=None, environment="test", database_url=db_url,  # type: ignore[call-arg]
                        redis_url=redis_url, secret_key=TEST_SECRET,
                        field_encryption_keys=",".join(TEST_KEYS), auto_migrate=False)
    ctx = AppContext.create(settings)
    try:
        async with ctx.transaction() as session:
            org = Organisation(slug=f"e2e-{secrets.token_hex(4)}", display_name="E2E clinic",
                               timezone="Europe/Rome")
            session.add(org)
            await session.flush()
            endpoint = EhrEndpoint(organisation_id=org.id, name="E2E", fhir_base="https://x/fhir",
                                   client_id="ov")
            session.add(endpoint)
            await session.flush()
            appt = Appointment(organisation_id=org.id, endpoint_id=endpoint.id,
                               ehr_appointment_id=secrets.token_hex(6), patient_ref="Patient/1",
                               start_at=utcnow() + timedelta(minutes=2))
            session.add(appt)
            await session.flush()
            visit = await service.open_visit(session, app=ctx, appointment=appt)
            links = {
                "visit_id": str(visit.id),
                "provider": await service.seat_link(session, app=ctx, visit=visit,
                                                    role="provider", ehr_user_id="Practitioner/9"),
                "patient": await service.seat_link(session, app=ctx, visit=visit, role="patient",
                                                   patient_ref="Patient/1"),
            }
            for n in range(interpreters):
                links[f"interpreter{n}"] = await service.seat_link(
                    session, app=ctx, visit=visit, role="interpreter")
        return links
    finally:
        await ctx.close()


async def audit_count(db_url: str, action: str) -> int:
    from sqlalchemy import func, select

    from openvisit.db import Database
    from openvisit.models import AuditLog

    db = Database(db_url)
    try:
        async with db.transaction() as session:
            return int((await session.execute(
                select(func.count()).select_from(AuditLog).where(AuditLog.action == action)
            )).scalar_one())
    finally:
        await db.dispose()


def on(base: str, link: str) -> str:
    """The same link served by the web process at ``base``."""
    return base + "/v/" + link.rsplit("/v/", 1)[1]


def token_pid(link: str) -> str:
    import uuid

    head = link.rsplit("/v/", 1)[1].split(".")[0]
    return str(uuid.UUID(bytes=base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))))


# ---------------------------------------------------------------------- browser helpers


async def new_page(browser: Browser, *, phone: bool = False, lang: str = "en-US") -> Page:
    context: BrowserContext = await browser.new_context(
        **(PHONE if phone else DESKTOP), locale=lang, permissions=["camera", "microphone"],
        bypass_csp=True,  # Playwright evaluates strings; the pages forbid eval for everyone else
    )
    page = await context.new_page()
    page.on("console", lambda m: m.type in ("error", "warning") and print(
        f"[console {m.type}] {m.text}", file=sys.stderr))
    page.on("pageerror", lambda e: print(f"[pageerror] {e}", file=sys.stderr))
    return page


async def patient_joins(page: Page, url: str) -> None:
    await page.goto(url)
    await page.wait_for_selector("video[data-preview]")
    await page.wait_for_function(
        "document.querySelector('video[data-preview]').videoWidth > 0", timeout=15000)
    await page.click('[data-action="join"]')
    await page.wait_for_selector('[data-step="lobby"]:not([hidden])', timeout=15000)


async def admit_from_panel(provider: Page, participant_id: str) -> None:
    item = f'[data-participant="{participant_id}"]'
    await provider.wait_for_selector(f"{item}.state-waiting", timeout=15000)
    await provider.click(f"{item} .btn-primary")


async def decoding(page: Page, peers: int, *, timeout: float = MEDIA_TIMEOUT_S) -> dict[str, Any]:
    """Wait until ``peers`` remote peers show decoded frames that keep increasing."""
    deadline = time.monotonic() + timeout
    first: dict[str, Any] = {}
    second: dict[str, Any] = {}
    while time.monotonic() < deadline:
        first = await page.evaluate("window.__openvisit.inbound()")
        await asyncio.sleep(1.0)
        second = await page.evaluate("window.__openvisit.inbound()")
        rising = [pid for pid, s in second.items()
                  if s["framesDecoded"] > first.get(pid, {}).get("framesDecoded", 0) > 0
                  and s["videoWidth"] > 0]
        if len(second) >= peers and len(rising) >= peers:
            break
    else:
        raise AssertionError(f"not decoding from {peers} peers: {first} then {second}")
    return {pid: {"frames_first": first[pid]["framesDecoded"],
                  "frames_later": second.get(pid, {}).get("framesDecoded", 0),
                  "video_width": second.get(pid, {}).get("videoWidth", 0),
                  "state": second.get(pid, {}).get("state")} for pid in first}


async def selected_candidate_types(page: Page) -> list[str]:
    return list(await page.evaluate("""async () => {
      const out = [];
      for (const link of window.__openvisit.mesh.links.values()) {
        const stats = await link.pc.getStats();
        let pair = null;
        stats.forEach((r) => {
          if (r.type === "transport" && r.selectedCandidatePairId) {
            pair = stats.get(r.selectedCandidatePairId);
          }
        });
        const local = pair && stats.get(pair.localCandidateId);
        out.push(local ? local.candidateType : "none");
      }
      return out;
    }"""))


async def shot(page: Page, shots: Path | None, name: str) -> None:
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(shots / f"room-{name}.png"))


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
    for page in (provider, patient, interpreter):
        await page.context.close()
    return {"frames": frames, "patient_sees": labels}


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


SCENARIOS = {f.__name__: f for f in (one_to_one, three_way, relay_only, lobby_refusal,
                                     two_processes, network_drop)}


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
