"""Lobby messages and chat in Chromium (issue 15 items 4 and 5), on both backends.

The embedded default runs clinician and patient on one web process; the PostgreSQL + Redis
pass puts the clinician on web process A and the patient on B (as in
``test_room_two_processes``), so the lobby message and every chat line cross the bus. The
driver is ``tests/e2e/drive_chat.py`` (scenario ``lobby_and_chat`` of ``drive_room.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import run_on_backend, screenshot_dir
from tests.support.backend import BACKEND

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OWN_WORDS = "<b>Room 4</b> is ready & waiting: see https://example.org/room-4"


def _report(db_url: str, tmp_path: Path) -> dict[str, Any]:
    shots = str(screenshot_dir(tmp_path / "shots"))
    return run_on_backend(db_url, tmp_path / "room", ["lobby_and_chat"], screenshots=shots)


def test_it_shows_the_clinicians_lobby_message_in_spanish_and_chats_both_ways(
    db_url: str, tmp_path: Path,
) -> None:
    result = _report(db_url, tmp_path)["lobby_and_chat"]
    if BACKEND == "postgres":
        assert result["bases"][0] != result["bases"][1]  # two web processes
    # The form appears only while someone waits, names who, offers the presets.
    assert result["compose_hidden_alone"] is True
    assert result["to_one"] == "To: Patient"
    assert [value for value, _text in result["presets"]] == [
        "late_10", "late_few", "stay", "device_test", ""]
    assert result["sent_note"] == ("Sent to Patient: “Your clinician is running about 10 "
                                   "minutes late.”")
    # The clinician chose the English preset; the Spanish patient reads it in Spanish, in a
    # polite live region.
    assert result["lobby_region"] == {
        "live": "polite", "label": "Mensaje de la clínica",
        "text": "Su profesional sanitario lleva unos 10 minutos de retraso."}
    # Own words arrive exactly as typed, as text: the markup made no element.
    assert result["own"] == {"text": OWN_WORDS, "elements": 0}
    # Chat: Enter sends from the labelled input that had focus; the patient's closed chat
    # counts the message and the page's live region reads it; links are links.
    assert result["focused"] == "chat-input"
    assert result["unread_label"] == "Chat (1 nuevos)"
    assert result["announced"] == ("Su profesional sanitario: Can you hear me? Notes: "
                                   "https://example.org/after-care")
    assert result["got"] == {"who": "Su profesional sanitario",
                             "text": "Can you hear me? Notes: https://example.org/after-care",
                             "link": "https://example.org/after-care"}
    assert result["back"] == {"who": "Patient", "text": "Sí, le oigo bien.", "link": None}
    panel = result["panel"]
    assert panel["role"] == "log" and panel["live"] == "polite"
    assert panel["label"] == "Mensaje para todas las personas en la llamada"
    # At 390 px: the panel fits, nothing scrolls sideways, no control's label is cut.
    assert panel["right"] <= panel["vw"] and panel["scroll"] <= panel["vw"]
    assert panel["cut"] == []
