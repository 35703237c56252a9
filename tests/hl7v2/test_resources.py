"""Where departments and providers hide (issue 11, item 4)."""

from __future__ import annotations

import pytest

from .support import drop_segments, epic, parse_us, replace_field


def without_ail_and_pv1() -> bytes:
    return drop_segments(epic(), "AIL", "PV1")


def test_it_takes_the_department_from_pv1_3_when_there_is_no_ail() -> None:
    msg = parse_us(drop_segments(epic(), "AIL"))

    assert (msg.department, msg.department_facility) == ("TELEHEALTH", "OPENVISIT CLINIC")
    assert str(msg.sources["department"]) == "PV1-3"


def test_it_takes_the_department_from_an_aig_that_is_one() -> None:
    message = without_ail_and_pv1() + b"\rAIG|1|A|CARDIO^Cardiology^L|DEPT^Department\r"

    msg = parse_us(message)

    assert msg.department == "CARDIO"
    assert str(msg.sources["department"]) == "AIG-3"


def test_it_never_takes_equipment_for_the_department_but_takes_rgs_3() -> None:
    message = without_ail_and_pv1().replace(b"RGS|1|A", b"RGS|1|A|VIDEO-CLINIC^Video clinic")
    message += b"\rAIG|1|A|CAM-7^Camera cart^L|EQUIP^Equipment\r"

    msg = parse_us(message)

    assert msg.department == "VIDEO-CLINIC"
    assert str(msg.sources["department"]) == "RGS-3"


def test_it_stores_no_department_when_none_is_named() -> None:
    assert parse_us(without_ail_and_pv1()).department is None


@pytest.mark.parametrize(
    "aip_3",
    ["Dr Jane Smith", "SMITH, JANE", "SMITH", "^SMITH^JANE", "Dr " + "Very Long Name " * 30],
)
def test_it_stores_no_provider_when_aip_3_holds_only_a_name(aip_3: str) -> None:
    msg = parse_us(replace_field(epic(), "AIP", 3, aip_3))

    assert msg.provider_id is None
    assert "provider_id" not in msg.sources
    assert "SMITH" not in repr(msg.to_log_dict()).upper()


@pytest.mark.parametrize(
    ("aip_3", "expected"),
    [
        ("1001", "1001"),
        ("C1234567^CLINICIAN^TEST", "C1234567"),
        ("JSMITH^SMITH^JANE", "JSMITH"),
        ("DRJONES^^^^^^^^NPI&2.16.840.1.113883.4.6&ISO", "DRJONES"),
        ("Dr Jane Smith~4711^SMITH^JANE", "4711"),
    ],
)
def test_it_stores_the_personnel_id(aip_3: str, expected: str) -> None:
    assert parse_us(replace_field(epic(), "AIP", 3, aip_3)).provider_id == expected


def test_it_takes_the_first_aip_with_an_id() -> None:
    message = replace_field(epic(), "AIP", 3, "Dr Jane Smith") + b"\rAIP|2|A|2002^NURSE^TEST\r"

    msg = parse_us(message)

    assert msg.provider_id == "2002"
    assert str(msg.sources["provider_id"]) == "AIP[2]-3"
