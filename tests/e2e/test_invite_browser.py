"""The clinician sends a guest's link by SMS and the guest joins from it, in Chromium (issue
15 item 6), on both backends: on PostgreSQL + Redis the clinician is on web process A, the
guest on B, and a separate worker process sends the message. Driver: ``drive_invite.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.support import assert_decoding, run_on_backend, screenshot_dir
from tests.support.backend import BACKEND

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_it_texts_the_guest_their_link_and_the_guest_joins_from_it(
    db_url: str, tmp_path: Path,
) -> None:
    shots = str(screenshot_dir(tmp_path / "shots"))
    result = run_on_backend(db_url, tmp_path / "room", ["invite_by_sms"],
                            screenshots=shots)["invite_by_sms"]
    if BACKEND == "postgres":
        assert result["bases"][0] != result["bases"][1]
    assert result["label"] == "Or send it: mobile number or e-mail"
    # Mistakes are answered beside the field, in words the clinician can act on.
    assert result["empty_note"] == "Type the mobile number or e-mail address to send the link to."
    assert "country code" in result["bad_note"]
    assert result["sent_note"] == "Link on its way to +39*******789."
    assert result["field_after"] == ""
    # The SMS is in the Italian-region guest's outbox, names no patient, carries their link.
    sms = result["sms"]
    assert sms.startswith("E2E clinic: you are invited to a video visit as a guest, ")
    assert "Patient" not in sms and "Reply STOP" in sms
    assert result["sms_masked"] == "+39*******789" and result["log_status"] == "sent"
    assert result["in_outbox_s"] < 15
    assert result["guest_host"] == result["bases"][1]
    # From the SMS link the guest waits, is admitted, and video flows both ways.
    assert result["lobby_text"].startswith("Il medico la farà entrare a breve")  # Italian phone
    assert_decoding(result["provider_frames"], 1)
    assert_decoding(result["guest_frames"], 1)
