"""Write-back from a visit in Chromium to an outside FHIR server (Medplum's router), inside a
private network namespace (issue 13, "done when"): the AuditEvents in order, the Encounter
finished with its period, the Appointment fulfilled, nothing twice; a device test leaves
its Observation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.support import assert_decoding, run_driver
from tests.peers.fixtures import require_npm_package

pytestmark = [pytest.mark.browser, pytest.mark.peers, pytest.mark.slow]
#: The clinician's page opens first; the patient joins, is admitted, leaves; the clinician
#: ends the visit, and their page's connection closes after that (a real browser's order).
EXPECTED = ["connected", "connected", "started", "admitted", "disconnected", "ended",
            "disconnected"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_npm_package("@medplum/fhir-router")
    result: dict[str, Any] = run_driver(tmp_path_factory.mktemp("writeback"),
                                        ["writeback"])["writeback"]
    return result


def test_it_writes_a_browser_visit_back_in_order_and_once(report: dict[str, Any]) -> None:
    assert_decoding(report["frames"]["patient"], 1)
    assert_decoding(report["frames"]["provider"], 1)
    assert report["states"] == {"sent": sum(report["states"].values())}, report["states"]
    kinds = [a["kind"] for a in report["audit"]]
    assert kinds == EXPECTED, [(a["kind"], a["agent"], a["recorded"]) for a in report["audit"]]
    recorded = [a["recorded"] for a in report["audit"]]
    assert recorded == sorted(recorded)
    assert all(a["encounter"] for a in report["audit"])
    agents = [a["agent"] for a in report["audit"]]
    assert agents == [report["practitioner"], report["patient"], None, report["patient"],
                      report["patient"], None, report["practitioner"]]
    encounter = report["encounter"]
    assert encounter["status"] == "finished" and encounter["class"]["code"] == "VR"
    assert encounter["period"]["start"] <= encounter["period"]["end"]
    assert report["appointment"]["status"] == "fulfilled"
    assert len(report["tags"]) == len(set(report["tags"])), "a write landed twice"


def test_it_says_visit_ended_in_the_clinicians_header_after_the_end(
        report: dict[str, Any]) -> None:
    """Issue 15 item 8: after "End visit" the header said "Connected" (its socket closing)."""
    assert report["status_after_end"] == "Visit ended"


def test_it_writes_the_device_test_result_as_an_observation(report: dict[str, Any]) -> None:
    assert report["device_saved"] == "true"
    (observation,) = report["observations"]
    assert observation["value"] in ("passed", "failed")
    assert {"camera", "microphone", "speaker"} <= set(observation["components"])

