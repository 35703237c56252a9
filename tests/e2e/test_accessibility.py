"""axe-core finds no serious or critical WCAG 2.1 A/AA violation on the visit's pages: the
patient's pre-join, lobby (caregiver panel open) and call (chat open) on a Spanish phone, the
clinician's call page (roster, invite link and send form) and the clinic queue. The portal's
pages are checked the same way along tests/portal/test_admin_flow.py's walk."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.support import run_driver

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_it_finds_no_serious_accessibility_problem_on_the_visit_pages(tmp_path: Path) -> None:
    result = run_driver(tmp_path / "room", ["accessibility"])["accessibility"]
    found = result["violations"]
    assert sorted(found) == ["patient-call-chat", "patient-lobby", "patient-prejoin",
                             "provider-call", "queue"]
    assert {page: problems for page, problems in found.items() if problems} == {}
