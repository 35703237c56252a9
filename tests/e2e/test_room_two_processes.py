"""Provider on web process A, patient on web process B, sharing PostgreSQL and Redis.

Runs on the PostgreSQL + Redis pass. Everything (both web processes, Chromium) runs inside a
private network namespace so media stays on loopback; the namespace reaches the real
PostgreSQL and Redis through Unix-socket forwarders (see :mod:`tests.e2e.forward`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.support import assert_decoding, run_on_backend
from tests.support.backend import BACKEND

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_it_connects_a_provider_and_a_patient_served_by_two_web_processes(
    db_url: str, tmp_path: Path
) -> None:
    if BACKEND != "postgres":
        pytest.skip("needs PostgreSQL + Redis: runs on the OPENVISIT_TEST_BACKEND=postgres pass")
    report = run_on_backend(db_url, tmp_path / "room", ["two_processes"])
    result = report["two_processes"]
    assert result["bases"][0] != result["bases"][1]
    assert result["refused"] == ["not_admitted"]
    assert result["provider_got_peer_messages"] == []
    assert_decoding(result["patient"], 1)
    assert_decoding(result["provider"], 1)
