"""A patient brings a caregiver into the visit, in Chromium (issue 15 item 7), on both
backends (PostgreSQL + Redis: clinician on web process A, patient and caregiver on B).
Driver: ``drive_caregiver.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.support import assert_decoding, run_on_backend, screenshot_dir
from tests.support.backend import BACKEND

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_it_lets_the_patient_bring_a_caregiver_who_waits_for_the_clinician(
    db_url: str, tmp_path: Path,
) -> None:
    shots = str(screenshot_dir(tmp_path / "shots"))
    result = run_on_backend(db_url, tmp_path / "room", ["caregiver"],
                            screenshots=shots)["caregiver"]
    if BACKEND == "postgres":
        assert result["bases"][0] != result["bases"][1]
    assert result["summary"] == "Traer a un familiar o cuidador"  # the patient's language
    assert result["on_prejoin"] is True and result["in_lobby"] is True  # both steps
    assert result["status"].startswith("Enlace creado.")
    assert result["link_host"] == result["bases"][1]
    # The clinician sees who invited them before letting them in.
    assert result["marked"] == "Invited by the patient"
    assert_decoding(result["family_frames"], 2)  # the clinician and the patient
