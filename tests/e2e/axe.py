"""axe-core (npm, pinned in tests/peers/package.json) run inside a page under test.

``violations(page)`` injects ``axe.min.js`` by evaluation (no script tag, so the page's own
Content-Security-Policy stays as it is) and returns the serious and critical violations of
the WCAG 2.x A/AA rules as plain data: rule id, impact, how many nodes, the first node's
selector. An empty list is the pass mark for the patient, clinician, queue and portal pages
(issue 15, "Done when"). Moderate and minor findings are left to review, not to CI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.peers.fixtures import NODE_MODULES

AXE_JS = NODE_MODULES / "axe-core" / "axe.min.js"
GATING = ("serious", "critical")
RUN = """async (gating) => {
  const result = await axe.run(document, {
    runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
    resultTypes: ["violations"],
  });
  return result.violations.filter((v) => gating.includes(v.impact)).map((v) => ({
    id: v.id, impact: v.impact, nodes: v.nodes.length,
    target: (v.nodes[0] && v.nodes[0].target.join(" ")) || "",
    summary: (v.nodes[0] && v.nodes[0].failureSummary || "").slice(0, 300),
  }));
}"""


def source() -> str:
    if not AXE_JS.exists():
        raise AssertionError(f"axe-core is missing ({AXE_JS}): run `make test` (npm ci)")
    return Path(AXE_JS).read_text()


async def violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe violations of the page as it is now (async Playwright)."""
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.evaluate(source())
    return list(await page.evaluate(RUN, list(GATING)))


def violations_sync(page: Any) -> list[dict[str, Any]]:
    """As :func:`violations`, for the sync Playwright API."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(source())
    return list(page.evaluate(RUN, list(GATING)))
