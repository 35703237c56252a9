"""Screenshots of the portal's pages with hospital-length data (issue 15 item 15), at
1280×800 and 390×844 (``-phone``).

Run: ``.venv/bin/python -m tests.portal.make_layout_screenshots [OUTDIR [NAME …]]`` from the
repository root; writes ``portal-<name>`` for every page of :func:`shots` (or only the NAMEs
given), default OUTDIR docs/screenshots. The organisation is the one the layout test checks
(:mod:`tests.portal.layout_data`): a fresh SQLite database, the app served by uvicorn on
loopback from a thread, Debian's Chromium driven by Playwright (phone: mobile emulation).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.portal.layout_data import Seeded, serve
from tests.portal.test_layout_phone import ARGS, CHROMIUM, VIEWPORTS, sign_in


def shots(seeded: Seeded) -> dict[str, str]:
    """Screenshot name → page. The sign-in, organisation, staff, outbox, write-back and report
    pages have screenshots of their own scripts (tests.portal.make_screenshots,
    make_writeback_screenshots, tests.reports.make_screenshots): run those too."""
    e = seeded.approved
    return {
        "overview": "/portal", "endpoints": "/portal/endpoints",
        "endpoint-approved": f"/portal/endpoints/{e}",
        "endpoint-awaiting": f"/portal/endpoints/{seeded.awaiting}",
        "endpoint-draft": f"/portal/endpoints/{seeded.draft}",
        "endpoint-edit": f"/portal/endpoints/{e}/edit",
        "endpoint-epic-link": f"/portal/endpoints/{e}/epic-link/provider",
        "endpoint-sms-settings": f"/portal/endpoints/{e}/sms",
        "endpoint-records": f"/portal/endpoints/{e}/records",
        "sms": "/portal/sms", "sms-number": f"/portal/sms/numbers/{seeded.number}",
        "certificates": "/portal/certificates", "approval": "/portal/approval",
        "records-index": "/portal/records", "audit": "/portal/audit",
    }


def main(outdir: Path, names: list[str]) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp)) as served, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for viewport in ("laptop", "phone"):
            width, height = VIEWPORTS[viewport]
            phone = viewport == "phone"
            suffix = "-phone" if phone else ""
            context = browser.new_context(viewport={"width": width, "height": height},
                                          is_mobile=phone, has_touch=phone)
            page = context.new_page()
            sign_in(page, served.base)
            for name, path in shots(served.seeded).items():
                if names and name not in names:
                    continue
                page.goto(served.base + path)
                page.screenshot(path=str(outdir / f"portal-{name}{suffix}.png"), full_page=True)
            context.close()
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"), sys.argv[2:])
