"""Take screenshots of the sandbox EHR pages with Debian's Chromium (Playwright sync API).

Run: ``.venv/bin/python -m tests.sandbox.make_screenshots [OUTDIR]`` from the repository root;
writes ``sandbox-{page}-{desktop,phone}.png`` (default OUTDIR: docs/screenshots).
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from openvisit.sandbox import SandboxClient, create_sandbox_app

from .helpers import REDIRECT, pkce_pair, serve

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}


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

    with serve(make) as (base, _app), sync_playwright() as pw:
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
