"""ER7 encoding rules: segment ends, delimiters, escapes, nulls, charsets and TS parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from openvisit.hl7v2 import DataTypeError, ErrorLocation, er7, parse_msh

from .support import NEW_YORK

HERE = ErrorLocation("AIS", field=4)


def ts(value: str) -> datetime:
    return er7.parse_ts(value, default_tz=NEW_YORK, location=HERE)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024", datetime(2024, 1, 1, tzinfo=NEW_YORK)),
        ("202403", datetime(2024, 3, 1, tzinfo=NEW_YORK)),
        ("20240312", datetime(2024, 3, 12, tzinfo=NEW_YORK)),
        ("2024031209", datetime(2024, 3, 12, 9, tzinfo=NEW_YORK)),
        ("202403120930", datetime(2024, 3, 12, 9, 30, tzinfo=NEW_YORK)),
        ("20240312093015", datetime(2024, 3, 12, 9, 30, 15, tzinfo=NEW_YORK)),
        ("20240312093015.25", datetime(2024, 3, 12, 9, 30, 15, 250000, tzinfo=NEW_YORK)),
        ("202403120930+0000", datetime(2024, 3, 12, 9, 30, tzinfo=UTC)),
        ("202403120930-0530", datetime(2024, 3, 12, 15, 0, tzinfo=UTC)),
        ("202109240930+0215", datetime(2021, 9, 24, 7, 15, tzinfo=UTC)),
        ("20240312+0100", datetime(2024, 3, 11, 23, 0, tzinfo=UTC)),
    ],
)
def test_it_parses_hl7_timestamps(value: str, expected: datetime) -> None:
    parsed = ts(value)

    assert parsed == expected
    assert parsed.tzinfo is not None


def test_it_keeps_the_sent_offset() -> None:
    assert ts("202109240930+0215").utcoffset() == timedelta(hours=2, minutes=15)
    assert ts("202403120930-0530").tzinfo == timezone(-timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "24",
        "20241312",
        "20240230",
        "202403122460",
        "2024031209301",
        "202403120930+0160",
        "202403120930+2400",
        "２０２４",
        # (ISO dates, long fractions, +HH and Z offsets are read since issue 11:
        # see test_timestamps.py)
    ],
)
def test_it_rejects_malformed_timestamps(value: str) -> None:
    with pytest.raises(DataTypeError) as caught:
        ts(value)

    assert caught.value.location == HERE


MESSAGE = "MSH|^~\\&|A|B|C|D|20240101||SIU^S12|1|P|2.5\rNTE|1||{}"


def nte(text: str) -> str:
    segment = er7.parse(MESSAGE.format(text)).first("NTE")
    assert segment is not None
    return segment.get(3)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", "a|b^c&d~e\\f"),
        ("caf\\XC3A9\\", "café"),
        ("caf\\XE9\\", "café"),
        ("one\\.br\\two", "one\ntwo"),
        ("\\H\\bold\\N\\", "bold"),
        ("\\Q\\", "\\Q\\"),
        ("open\\F", "open\\F"),
        ('""', ""),
    ],
)
def test_it_unescapes_field_text(raw: str, text: str) -> None:
    assert nte(raw) == text


def test_it_escapes_what_it_unescapes() -> None:
    text = "a|b^c&d~e\\f\rg\nh"

    assert nte(er7.escape(text)) == text


@pytest.mark.parametrize("newline", ["\r", "\n", "\r\n"])
def test_it_splits_segments_on_any_line_end(newline: str) -> None:
    message = er7.parse(MESSAGE.format("x").replace("\r", newline) + newline)

    assert [s.name for s in message.segments] == ["MSH", "NTE"]


def test_it_keeps_line_feeds_inside_fields_of_cr_messages() -> None:
    assert nte("line one\nline two") == "line one\nline two"


def test_it_answers_empty_for_absent_fields_components_and_repetitions() -> None:
    segment = er7.parse(MESSAGE.format("x")).first("NTE")
    assert segment is not None

    assert segment.get(99) == ""
    assert segment.get(3, component=7, subcomponent=3) == ""
    assert segment.get(0) == ""
    assert segment.get(-1) == ""
    assert segment.repetitions(42) == ()


def test_it_reads_the_declared_charset() -> None:
    raw = MESSAGE.format("čeština").replace("2.5", "2.5||||||8859/2").encode("iso8859-2")

    assert "čeština" in er7.decode(raw)
    assert parse_msh(raw).charset == "8859/2"


def test_it_reads_utf8_when_nothing_is_declared() -> None:
    assert "čeština" in er7.decode(MESSAGE.format("čeština").encode())


def test_it_reads_msh_fields() -> None:
    header = parse_msh(
        "MSH|^~\\&|APP^1.2.3^ISO|FAC|RCV|RFAC|20240101||SIU^S14^SIU_S12|ID\\F\\1|T^A|2.5.1|||ER|AL"
    )

    assert header.sending_application.name == "APP"
    assert tuple(header.sending_application) == ("APP", "1.2.3", "ISO")
    assert (header.message_type, header.trigger_event, header.message_structure) == (
        "SIU",
        "S14",
        "SIU_S12",
    )
    assert header.control_id == "ID|1"
    assert header.processing_id == "T"
    assert header.version == "2.5.1"
    assert (header.accept_ack_type, header.application_ack_type) == ("ER", "AL")


def test_it_reads_a_one_component_message_type() -> None:
    header = parse_msh("MSH|^~\\&|A|B|C|D|20240101||SIU_S12|1|P|2.5")

    assert (header.message_type, header.trigger_event) == ("SIU", "S12")


def test_it_honours_a_custom_escape_character() -> None:
    message = er7.parse("MSH#@*%!#A#B#C#D#2024##SIU@S12#1#P#2.5\rNTE#1##a%F%b%S%c@d!e*f")
    segment = message.first("NTE")
    assert segment is not None

    assert message.delimiters == er7.Delimiters("#", "@", "*", "%", "!")
    assert segment.get(3) == "a#b@c"
    assert segment.get(3, component=2, subcomponent=2) == "e"
    assert [v.get() for v in segment.repetitions(3)] == ["a#b@c", "f"]
