"""Provider on web process A, patient on web process B, sharing PostgreSQL and Redis.

Runs on the PostgreSQL + Redis pass. Everything (both web processes, Chromium) runs inside a
private network namespace so media stays on loopback; the namespace reaches the real
PostgreSQL and Redis through Unix-socket forwarders (see :mod:`tests.e2e.forward`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.forward import unix_forwarders
from tests.e2e.support import assert_decoding, run_driver
from tests.support.backend import BACKEND, REDIS_URL

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_it_connects_a_provider_and_a_patient_served_by_two_web_processes(
    db_url: str, tmp_path: Path
) -> None:
    if BACKEND != "postgres":
        pytest.skip("needs PostgreSQL + Redis: runs on the OPENVISIT_TEST_BACKEND=postgres pass")
    pg, redis = urlsplit(db_url), urlsplit(REDIS_URL)
    sockets = Path("/tmp") / f"ov-e2e-{tmp_path.name[-12:]}"  # short: Unix paths ≤ 107 bytes
    routes = {
        sockets / f".s.PGSQL.{pg.port or 5432}": (pg.hostname or "127.0.0.1", pg.port or 5432),
        sockets / "redis.sock": (redis.hostname or "127.0.0.1", redis.port or 6379),
    }
    inside_db = f"{pg.scheme}://{pg.username or 'postgres'}@{pg.path}?host={sockets}"
    if pg.port and pg.port != 5432:
        inside_db += f"&port={pg.port}"
    inside_redis = f"unix://{sockets / 'redis.sock'}?db={redis.path.lstrip('/') or '0'}"
    with unix_forwarders(routes):
        report = run_driver(tmp_path / "room", ["two_processes"], db_url=inside_db,
                            redis_url=inside_redis)
    result = report["two_processes"]
    assert result["bases"][0] != result["bases"][1]
    assert result["refused"] == ["not_admitted"]
    assert result["provider_got_peer_messages"] == []
    assert_decoding(result["patient"], 1)
    assert_decoding(result["provider"], 1)
