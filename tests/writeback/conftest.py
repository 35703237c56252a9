"""The write-back tests' outside EHR: Medplum's FHIR router, started for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.writeback.support import FhirServer


@pytest.fixture
def fhir_server(tmp_path: Path) -> Iterator[FhirServer]:
    """The EHR, up; the test may ``stop()`` and ``start()`` it (it keeps what it stored)."""
    server = FhirServer(tmp_path)
    server.start()
    yield server
    server.stop()
