"""Choosing the SMS number, the e-mail address and the language from PID (EHR-SPEC §4)."""

from __future__ import annotations

import pytest

from openvisit.hl7v2 import er7, normalise_phone
from openvisit.hl7v2.contact import email, language, sms_number


def pid(home: str = "", business: str = "", lang: str = "", telecom: str = "") -> er7.Segment:
    fields = [""] * 41
    fields[13], fields[14], fields[15], fields[40] = home, business, lang, telecom
    message = er7.parse("MSH|^~\\&|A|B|C|D|2024||SIU^S12|1|P|2.8\rPID" + "|".join(fields))
    segment = message.first("PID")
    assert segment is not None
    return segment


def sms(home: str = "", business: str = "", region: str = "US", telecom: str = "") -> str | None:
    return sms_number(pid(home, business, telecom=telecom), default_region=region)


def test_it_prefers_cp_then_prs_then_prn() -> None:
    prn, prs, cp = "2025550100^PRN^PH", "2025550111^PRS^PH", "2025550122^ORN^CP"

    assert sms(f"{prn}~{prs}~{cp}") == "+12025550122"
    assert sms(f"{prn}~{prs}") == "+12025550111"
    assert sms(prn) == "+12025550100"
    assert sms("2025550133^WPN^PH") is None


def test_it_looks_at_business_numbers_after_home_numbers_in_each_pass() -> None:
    assert sms("2025550100^PRS^PH", "2025550144^WPN^CP") == "+12025550144"
    assert sms("2025550155^PRN^CP", "2025550144^WPN^CP") == "+12025550155"


def test_it_reads_v27_patient_telecom_after_pid_13_and_14() -> None:
    assert sms(telecom="2025550166^PRS^CP") == "+12025550166"


def test_it_builds_the_number_from_country_area_and_local_components() -> None:
    assert sms("^PRN^CP^^1^202^5550142") == "+12025550142"
    assert sms("^PRN^CP^^^202^5550142") == "+12025550142"
    # A national trunk prefix kept in XTN-6 still gives the right number.
    assert sms("^PRN^CP^^61^0491^570156") == "+61491570156"
    assert sms("^PRN^CP^^+61^491^570156") == "+61491570156"


def test_it_falls_back_to_the_free_text_and_unformatted_numbers() -> None:
    assert sms("(202)555-0142X123B456C call after 5^PRN^CP") == "+12025550142"
    assert sms("^PRN^CP^^^^^^^^^2025550142") == "+12025550142"
    assert sms("^PRN^CP^^^^1111~202 555 0188^PRN^CP") == "+12025550188"


def test_it_skips_numbers_that_cannot_take_texts() -> None:
    landline = "020 7946 0321^PRN^CP"  # Ofcom drama landline: valid, fixed line
    mobile = "0491 570 156^PRN^PH"  # ACMA fictional mobile

    assert sms(landline, region="GB") is None
    assert sms(f"{landline}~{mobile}", region="AU") == "+61491570156"


@pytest.mark.parametrize(
    "xtn",
    [
        "78788788^^CP",
        "1111^PRN^CP",
        "^PRN^CP^^999^^1",
        "not a number^PRN^CP",
        "+^PRN^CP",
        "9" * 300 + "^PRN^CP",
        "^PRN^CP^^99999999999999999999^1^2",
    ],
)
def test_it_returns_none_for_invalid_numbers(xtn: str) -> None:
    assert sms(xtn) is None


def test_it_normalises_free_standing_numbers() -> None:
    assert normalise_phone("+1 (202) 555-0142", region="GB") == "+12025550142"
    assert normalise_phone("0491 570 156", region="AU") == "+61491570156"
    assert normalise_phone("07700 900123", region="GB") is None
    assert normalise_phone("", region="US") is None


@pytest.mark.parametrize(
    ("home", "expected"),
    [
        ("^NET^Internet^test.patient@example.org", "test.patient@example.org"),
        ("^NET^X.400^test.patient@example.org", "test.patient@example.org"),
        ("^ORN^Internet^test.patient@example.org", "test.patient@example.org"),
        ("test.patient@example.org^NET", "test.patient@example.org"),
        (
            "2025550100^PRN^PH~^NET^Internet^first@example.org~^NET^^second@example.org",
            "first@example.org",
        ),
        ("^NET^Internet^not an address", None),
        ("89898989^WPN^Internet", None),
        ("^PRN^PH^test.patient@example.org", None),
    ],
)
def test_it_finds_the_email_address(home: str, expected: str | None) -> None:
    assert email(pid(home)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("eng", "en"),
        ("English", "en"),
        ("ENGLISH", "en"),
        ("en-US", "en"),
        ("en_GB", "en"),
        ("es", "es"),
        ("spa", "es"),
        ("Spanish", "es"),
        ("Español", "es"),
        ("cs", "cs"),
        ("cze", "cs"),
        ("ces", "cs"),
        ("Czech", "cs"),
        ("čeština", "cs"),
        ("it", "it"),
        ("ita", "it"),
        ("Italian", "it"),
        ("ara^^HL70296^eng^English-us", "ar"),
        ("1^English", "en"),
        ("99^^LOCAL^spa", "es"),
        ("xx", None),
        ("1", None),
        ("", None),
    ],
)
def test_it_normalises_the_language(value: str, expected: str | None) -> None:
    assert language(pid(lang=value)) == expected


def test_it_answers_none_without_a_pid() -> None:
    assert sms_number(None, default_region="US") is None
    assert email(None) is None
    assert language(None) is None
