"""Every portal page fits a phone and a laptop in Chromium (issue 15 item 15).

The organisation of :mod:`tests.portal.layout_data` (hospital-length URLs and ids, outbox
messages with join links, write-backs the EHR refused, audit entries with long values) is
served by uvicorn on loopback; Debian's Chromium, driven by Playwright, signs in as an org
admin and opens each page at 390×844 and 1280×800. On every page:

- the page itself never scrolls sideways (``scrollWidth <= innerWidth``); a wide data table
  may scroll inside its own ``.table-wrap``, which clips it;
- no badge (a state, an environment, the header's roles) is broken: each stays on one line,
  its words whole (``white-space: nowrap``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.portal.conftest import PASSWORD
from tests.portal.layout_data import ADMIN, REPORT_QUERY, Seeded, Served, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
#: A phone (mobile emulation: the page is laid out at device-width), a laptop window made as
#: narrow as a phone (no emulation: nothing zooms out to hide an overflow) and a laptop.
VIEWPORTS = {"phone": (390, 844), "narrow": (390, 844), "laptop": (1280, 800)}
BADGES = ".state, .env, .badge, .role"


def portal_pages(seeded: Seeded) -> list[str]:
    """Every page of the portal a signed-in org admin opens (the sign-in page apart)."""
    e, number = seeded.approved, seeded.number
    return [
        "/portal", "/portal/organisation", "/portal/endpoints", "/portal/endpoints/new",
        f"/portal/endpoints/{e}", f"/portal/endpoints/{seeded.awaiting}",
        f"/portal/endpoints/{seeded.draft}", f"/portal/endpoints/{e}/edit",
        f"/portal/endpoints/{e}/epic-link/provider", f"/portal/endpoints/{e}/sms",
        f"/portal/endpoints/{e}/writeback", f"/portal/endpoints/{e}/records",
        "/portal/sms", f"/portal/sms/numbers/{number}", "/portal/certificates",
        "/portal/approval", "/portal/records", "/portal/staff", "/portal/audit", "/ops/outbox",
        *(f"/portal/reports/{name}?{REPORT_QUERY}"
          for name in ("usage", "quality", "messages", "funnel")),
        "/portal/endpoints/00000000-0000-4000-8000-000000000000",  # the problem page
    ]


#: Width of the page and of anything that sticks out of it, outside a scrolling table.
MEASURE = """(width) => {
  const root = document.documentElement;
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= width + 0.5) continue;
    // A table's wrapper clips what is inside it, but not an absolute element that escapes it.
    const clipped = el.parentElement.closest('.table-wrap')
      && !['absolute', 'fixed'].includes(getComputedStyle(el).position);
    if (clipped) continue;
    const parent = el.parentElement;
    if (parent && parent.getBoundingClientRect().right > width + 0.5
        && !parent.matches('body, main, .portal-grid, .portal-content')) continue;
    const name = [el.tagName.toLowerCase(), ...el.classList].join('.');
    out.push(`${name} → ${Math.round(r.right)}px`);
    if (out.length >= 4) break;
  }
  return {width: root.scrollWidth, inner: window.innerWidth, culprits: out};
}"""

#: Every badge that wraps (its text on more than one line) or may break inside a word.
BROKEN_BADGES = """(selector) => {
  const out = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.getClientRects().length || el.closest('.visually-hidden')) continue;
    const range = document.createRange();
    range.selectNodeContents(el);
    const tops = new Set([...range.getClientRects()].filter(r => r.width > 0)
                         .map(r => Math.round(r.top)));
    const style = getComputedStyle(el);
    const text = el.textContent.trim().replace(/\\s+/g, ' ');
    if (tops.size > 1) out.push(`"${text}" on ${tops.size} lines`);
    else if (!['nowrap', 'pre'].includes(style.whiteSpace))
      out.push(`"${text}" may wrap (white-space: ${style.whiteSpace})`);
  }
  return out;
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("layout")) as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def open_context(chromium: Browser, viewport: str) -> BrowserContext:
    width, height = VIEWPORTS[viewport]
    phone = viewport == "phone"  # narrow: a desktop window as wide as a phone
    return chromium.new_context(viewport={"width": width, "height": height}, is_mobile=phone,
                                has_touch=phone)


def sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/portal/signin?next=%2Fportal")
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/portal/signin'] button[type=submit]")
    page.wait_for_url(f"{base}/portal")


def each_page(chromium: Browser, served: Served, viewport: str) -> Iterator[tuple[str, Page]]:
    """(path, page) for the sign-in page, then every portal page signed in."""
    context = open_context(chromium, viewport)
    try:
        page = context.new_page()
        page.goto(f"{served.base}/portal/signin")
        yield "/portal/signin", page
        sign_in(page, served.base)
        for path in portal_pages(served.seeded):
            response = page.goto(served.base + path)
            assert response is not None
            expected = 404 if path.startswith("/portal/endpoints/00000000") else 200
            assert response.status == expected, (path, response.status)
            # What is folded away is checked too: a reader opens it.
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            yield path, page
    finally:
        context.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_it_never_makes_a_page_wider_than_the_screen(chromium: Browser, served: Served,
                                                     viewport: str) -> None:
    too_wide = {}
    width = VIEWPORTS[viewport][0]
    for path, page in each_page(chromium, served, viewport):
        m = page.evaluate(MEASURE, width)
        if max(m["width"], m["inner"]) > width:
            too_wide[path] = f"{m['width']}px: {'; '.join(m['culprits'])}"
    assert not too_wide, f"wider than {VIEWPORTS[viewport][0]}px: {too_wide}"


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_it_keeps_every_badge_on_one_line(chromium: Browser, served: Served,
                                          viewport: str) -> None:
    broken = {}
    seen = 0
    for path, page in each_page(chromium, served, viewport):
        seen += page.locator(BADGES).count()
        found = page.evaluate(BROKEN_BADGES, BADGES)
        if found:
            broken[path] = found
    assert seen > 50, "the pages show badges"
    assert not broken, broken


def test_it_lets_a_wide_table_scroll_inside_its_wrapper(chromium: Browser,
                                                        served: Served) -> None:
    """What the first check allows: the reports' tables are wider than a phone and scroll in
    their ``.table-wrap`` (clipped, reachable by keyboard), not with the page."""
    context = open_context(chromium, "phone")
    try:
        page = context.new_page()
        sign_in(page, served.base)
        page.goto(f"{served.base}/portal/reports/usage?{REPORT_QUERY}")
        wrap = page.locator("section.mt-m .table-wrap").first
        sizes = wrap.evaluate("el => [el.scrollWidth, el.clientWidth, "
                              "getComputedStyle(el).overflowX]")
        assert sizes[0] > sizes[1] and sizes[2] == "auto", sizes
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()

