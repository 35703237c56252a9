"""Screenshots of the Epic encrypted-link pages with Debian's Chromium (Playwright sync API).

Run: ``.venv/bin/python -m tests.launch.make_screenshots [OUTDIR]`` from the repository root.
Starts a real `openvisit web` (environment ``test``, no IdP, a throw-away SQLite file), adds an
Epic endpoint with a GCM provider key and a legacy CBC patient key (opted in) through the CLI,
signs in to the portal and writes ``launch-epic-*-{desktop,phone}.png`` (default OUTDIR:
docs/screenshots): the endpoint page with the legacy warning, the key form refusing the
provider key for patient links, and the page a clinician's Epic link gets without an IdP.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from playwright.sync_api import Page, sync_playwright

from openvisit.crypto import generate_key
from tests.peers.fixtures import free_port
from tests.support.procs import Proc, wait_for

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}
PASSWORD = "correct horse battery staple"


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "openvisit", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def _sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/portal/signin")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/portal/signin'] button[type=submit]")
    page.wait_for_url(f"{base}/portal*")


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ov-epic-shots-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
    env.update(OPENVISIT_ENVIRONMENT="test", OPENVISIT_PUBLIC_URL=base,
               OPENVISIT_DATABASE_URL=f"sqlite+aiosqlite:///{work / 'openvisit.db'}",
               OPENVISIT_SECRET_KEY="screenshot-secret-" + "s" * 32,
               OPENVISIT_FIELD_ENCRYPTION_KEYS=generate_key(), OPENVISIT_AUTO_MIGRATE="true",
               PYTHONPATH=str(Path.cwd()))
    _cli(env, "migrate")
    _cli(env, "admin", "create", "--username", "admin", "--org", "default", "--org-name",
         "Sandbox Family Clinic", "--password-stdin", stdin=PASSWORD + "\n")
    _cli(env, "endpoint", "add", "--fhir-base", "https://epic.example.org/api/FHIR/R4",
         "--client-id", "openvisit", "--vendor", "epic", "--environment", "test",
         "--name", "Epic test", "--approved")
    endpoint_id = _cli(env, "endpoint", "list").split()[0]
    provider_key, patient_key = os.urandom(32), os.urandom(32)
    (work / "provider.key").write_text(base64.b64encode(provider_key).decode())
    (work / "patient.key").write_text(base64.b64encode(patient_key).decode())
    _cli(env, "endpoint", "epic-link", endpoint_id, "--kind", "provider",
         "--key-file", str(work / "provider.key"))
    subprocess.run([sys.executable, "-m", "openvisit", "endpoint", "epic-link", endpoint_id,
                    "--kind", "patient", "--key-file", str(work / "patient.key"), "--mode",
                    "cbc-zero-iv", "--allow-legacy-mode"], env=env, check=True,
                   capture_output=True)
    nonce = os.urandom(12)
    plain = (f"SessionID=CSN-1&ExternalID=DOC-7&ExternalIDType=EPIC&Timestamp={int(time.time())}"
             "&LinkValidityPeriod=60").encode()
    link = base64.urlsafe_b64encode(nonce + AESGCM(provider_key).encrypt(nonce, plain, None))
    web = Proc(["web", "--port", str(port)], env=env, log=work / "openvisit.log")
    try:
        wait_for(lambda: _up(f"{base}/healthz"), timeout=30, what="OpenVisit", proc=web)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for name, (width, height) in VIEWPORTS.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                _sign_in(page, base)
                page.goto(f"{base}/portal/endpoints/{endpoint_id}#epic-links")
                page.locator("#epic-links").scroll_into_view_if_needed()
                page.screenshot(path=str(outdir / f"launch-epic-endpoint-{name}.png"))
                page.goto(f"{base}/portal/endpoints/{endpoint_id}/epic-link/patient")
                page.fill("input[name=key]", base64.b64encode(provider_key).decode())
                page.select_option("select[name=mode]", "gcm")
                page.click("form.card button[type=submit]")
                page.wait_for_selector(".error-summary")
                page.screenshot(path=str(outdir / f"launch-epic-same-key-{name}.png"),
                                full_page=True)
                page.goto(f"{base}/launch/epic/{endpoint_id}/provider?data="
                          f"{quote(link.decode())}")
                page.screenshot(path=str(outdir / f"launch-epic-no-idp-{name}.png"),
                                full_page=True)
                page.close()
            browser.close()
    finally:
        web.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"))
