"""SMART scope spelling for v1 and v2 servers (openvisit.smart.scopes, openvisit.launch.scopes)."""

from __future__ import annotations

from typing import Any

import pytest

from openvisit.launch import scopes as launch_scopes
from openvisit.smart.discovery import SmartConfiguration
from openvisit.smart.scopes import server_takes_v1, spell

from .fake_ehr import smart_configuration


def _config(**changes: Any) -> SmartConfiguration:
    return SmartConfiguration.model_validate({**smart_configuration(), **changes})


@pytest.mark.parametrize(
    ("changes", "v1"),
    [
        ({}, False),  # scopes_supported lists a v2 scope: v2
        ({"capabilities": ["permission-v1"]}, True),
        ({"capabilities": ["permission-v1", "permission-v2"]}, False),
        ({"scopes_supported": ["openid", "patient/*.read", "user/Appointment.write"]}, True),
        ({"scopes_supported": ["openid", "launch"]}, False),  # nothing to go by: SMART 2
        ({"scopes_supported": []}, False),
    ],
)
def test_it_tells_v1_servers_from_v2_ones(changes: dict[str, Any], v1: bool) -> None:
    assert server_takes_v1(_config(**changes)) is v1


def test_it_spells_resource_scopes_in_v1_words_and_leaves_the_rest() -> None:
    wanted = ["launch", "openid", "patient/Appointment.rs", "user/Encounter.r",
              "user/Observation.cud", "system/Patient.cruds", "patient/*.read", "launch"]
    assert spell(wanted, v1=True) == (
        "launch openid patient/Appointment.read user/Encounter.read user/Observation.write "
        "system/Patient.* patient/*.read")
    assert spell(wanted, v1=False) == (
        "launch openid patient/Appointment.rs user/Encounter.r user/Observation.cud "
        "system/Patient.cruds patient/*.read")


def test_it_asks_each_launch_for_exactly_what_it_reads() -> None:
    assert launch_scopes.requested("patient", ehr_launch=True) == (
        "launch openid fhirUser patient/Appointment.rs patient/Encounter.rs")
    assert launch_scopes.requested("patient", ehr_launch=False,
                                   config=_config(capabilities=["permission-v1"])) == (
        "launch/patient openid fhirUser patient/Appointment.read patient/Encounter.read")
    assert "launch" not in launch_scopes.requested("provider", ehr_launch=False).split()
