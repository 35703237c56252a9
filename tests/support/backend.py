"""Which backend this test run exercises, and settings for it.

``make test`` runs the suite twice: ``OPENVISIT_TEST_BACKEND=sqlite`` (the embedded default:
SQLite file + in-process bus) and ``OPENVISIT_TEST_BACKEND=postgres`` (PostgreSQL + Redis).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from openvisit.config import Settings
from openvisit.crypto import generate_key

BACKEND = os.environ.get("OPENVISIT_TEST_BACKEND", "sqlite")
PG_ADMIN_URL = os.environ.get("OPENVISIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("OPENVISIT_TEST_REDIS", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parent.parent.parent
SHARED = REPO.parent / "shared"
TEST_SECRET = "test-secret-key-" + "x" * 40
TEST_KEYS = [generate_key(), generate_key()]


def make_settings(db_url: str, **overrides: Any) -> Settings:
    """Settings for an in-process app on ``db_url`` and this run's bus."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": db_url,
        "redis_url": REDIS_URL if BACKEND == "postgres" else "",
        "secret_key": TEST_SECRET,
        "field_encryption_keys": ",".join(TEST_KEYS),
        "auto_migrate": False,
        "job_backoff_base_seconds": 0.05,
        "job_backoff_max_seconds": 0.5,
        "job_poll_seconds": 0.05,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def subprocess_env(db_url: str, **extra: str) -> dict[str, str]:
    """Environment for an OpenVisit subprocess on ``db_url`` and this run's bus."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
    env.update(
        OPENVISIT_ENVIRONMENT="test",
        OPENVISIT_DATABASE_URL=db_url,
        OPENVISIT_REDIS_URL=REDIS_URL if BACKEND == "postgres" else "",
        OPENVISIT_SECRET_KEY=TEST_SECRET,
        OPENVISIT_FIELD_ENCRYPTION_KEYS=",".join(TEST_KEYS),
        OPENVISIT_AUTO_MIGRATE="false",
        OPENVISIT_LOG_LEVEL="INFO",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env
