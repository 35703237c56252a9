"""Issue 15 items 1 and 3 in Chromium: the clinic queue's alerts, early open and reopen.

The SQLite pass plays every scenario in one web process (``drive_queue.py`` through
``drive_room.py``, inside a private network namespace); the PostgreSQL + Redis pass plays the
queue with the patient served by a second web process, so the alert crosses the bus.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import SCREENSHOTS_ENV, assert_decoding, run_driver, run_on_backend
from tests.support.backend import BACKEND

pytestmark = [pytest.mark.browser, pytest.mark.peers, pytest.mark.slow]
SCENARIOS = ["queue_alerts", "early_open", "reopen"]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get(SCREENSHOTS_ENV)
    return Path(chosen).resolve() if chosen else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, shots: Path) -> dict[str, Any]:
    return run_driver(tmp_path_factory.mktemp("queue"), SCENARIOS, screenshots=str(shots))


def check_queue_alerts(result: dict[str, Any]) -> None:
    # Only this clinician's visits of today, by time; never the colleague's.
    assert result["rows"] == result["expected_rows"]
    assert result["colleague"] not in result["rows"]
    assert result["title_before"] == "Clinic queue · OpenVisit"
    assert result["summary_before"] == "Nobody is waiting"
    assert result["notify_state"] == "Desktop alerts on"
    asked = result["asked"]  # not granted yet: asked on the click only, then said so
    assert asked == {"before": 0, "button": True, "after": 1, "state": "Desktop alerts on"}
    # The patient starts waiting: the tab title counts them, the row says so, the chime plays
    # (the page's audio running), a desktop notification is shown, screen readers hear it.
    assert result["title_waiting"] == "(1) Clinic queue · OpenVisit"
    assert result["summary_waiting"] == "1 patient waiting"
    assert result["waiting_text"].startswith("Waiting 0:0"), result["waiting_text"]
    alerts = result["alerts"]
    assert alerts["chimes"] == 1 and alerts["lastChime"]["audio"] == "running", alerts
    assert alerts["notifications"] == 1, alerts
    assert alerts["lastNotification"]["title"] == "A patient is waiting"
    assert alerts["lastNotification"]["body"].startswith("Patient (")
    assert result["live"].startswith("Patient is waiting (")
    assert result["alerted_after_s"] < 5, result["alerted_after_s"]
    # The row opened the clinician's room, whose tab title counts the waiting patient too.
    assert result["room_title"] == "(1) Video visit · OpenVisit"
    assert result["room_alerts"]["chimes"] >= 1
    # Admitted: the queue shows the clinician in the call, and the count is gone.
    assert result["title_after"] == "Clinic queue · OpenVisit"
    assert result["badge_after"] == "You are in the call"
    # The mute survived a reload, and the next arrival was counted but silent.
    assert result["muted_label"] == "Chime: off"
    assert result["muted_alerts"]["chimes"] == 0
    assert result["muted_alerts"]["notifications"] == 1


def test_it_alerts_the_queue_when_a_patient_starts_waiting(report: dict[str, Any]) -> None:
    check_queue_alerts(report["queue_alerts"])


def test_it_lets_the_clinician_open_the_room_early_while_the_patient_waits(
    report: dict[str, Any],
) -> None:
    result = report["early_open"]
    assert result["early_title"] == "The visit is not open yet"
    assert "You can open the room now to get ready" in result["early_text"]
    assert result["status"] == "Connected"
    assert result["provider_url"] == result["provider_link"]
    # The patient keeps their window and wording, before and after the room was opened.
    assert result["patient_before"] == result["patient_after"] == "It is a little early"
    assert "Please come back then" in result["patient_text"]


def test_it_reopens_a_visit_ended_by_mistake_and_the_patient_joins_again(
    report: dict[str, Any],
) -> None:
    result = report["reopen"]
    assert result["patient_ended"] == "This visit has ended"
    assert result["header"] == "Visit ended"
    assert "you can reopen it until" in result["ended_text"]
    assert_decoding(result["frames"]["patient"], 1)
    assert_decoding(result["frames"]["provider"], 1)


def test_it_took_the_screenshots_of_the_queue_and_the_clinician_pages(
    report: dict[str, Any], shots: Path,
) -> None:
    for name in ("desktop", "waiting-desktop", "waiting-phone", "waiting-phone-end",
                 "provider-alerts", "provider-alerts-phone", "early-desktop", "early-phone",
                 "reopen-in-room", "reopen-desktop", "reopen-phone"):
        path = shots / f"queue-{name}.png"
        assert path.exists() and path.stat().st_size > 10_000, path


def test_it_alerts_a_queue_on_one_web_process_of_a_patient_on_another(
    db_url: str, tmp_path: Path,
) -> None:
    if BACKEND != "postgres":
        pytest.skip("needs PostgreSQL + Redis: runs on the OPENVISIT_TEST_BACKEND=postgres pass")
    report = run_on_backend(db_url, tmp_path / "queue", ["queue_alerts"])
    result = report["queue_alerts"]
    assert result["bases"][0] != result["bases"][1]
    check_queue_alerts(result)
