"""The machinery the room scenarios run on: processes, seed data, browser helpers.

Used by ``drive_room.py`` inside a private network namespace; see its docstring.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page

from tests.support.backend import TEST_KEYS, TEST_SECRET

REPO = Path(__file__).resolve().parents[2]

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

    def worker(self, public_url: str) -> None:
        """A job worker (``python -m openvisit worker``) whose links point at ``public_url``."""
        log = self.workdir / "worker.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "openvisit", "worker"],
            env=self.env(OPENVISIT_PUBLIC_URL=public_url, OPENVISIT_JOB_POLL_SECONDS="0.2"),
            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs.append(proc)

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


async def seed(db_url: str, redis_url: str, *, interpreters: int = 0,
               start_minutes: float = 2, department: str | None = None,
               messaging: bool = False) -> dict[str, Any]:
    """An appointment starting ``start_minutes`` from now (in 2 minutes: its window is open)
    with a clinician and a patient seat; returns the links. ``messaging``: SMS and e-mail on
    for the clinic (the outbox provider; no confirmations or reminders of its own)."""
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
            if messaging:
                from openvisit.models import SmsSettings

                org.default_phone_region = "IT"
                session.add(SmsSettings(endpoint_id=endpoint.id, enabled=True,
                                        confirmations_enabled=False,
                                        reminder_offsets_minutes=[]))
            appt = Appointment(organisation_id=org.id, endpoint_id=endpoint.id,
                               ehr_appointment_id=secrets.token_hex(6),
                               **ctx.refs.columns("Patient/1"),
                               start_at=utcnow() + timedelta(minutes=start_minutes),
                               department=department)
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
