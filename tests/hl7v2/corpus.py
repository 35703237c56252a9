"""An SIU variation corpus (issue 11): four feed families, and the variations real feeds make.

Each family is written the way one kind of real feed writes SIU (all data synthetic: TEST^
PATIENT, fictional 555-01xx and libphonenumber example numbers, example.org addresses):

- ``epic23``: Epic-style v2.3. SCH-11 and AIS-4/AIL-6/AIP-6 carry the time, local times
  without an offset, a ZCH segment, PID-13 with a PRN landline before the CP mobile, PV1-19
  the CSN, department in AIL-3, language as an English name.
- ``uk24``: UK PAS-style v2.4, ISO 8859-1 (MSH-18), enhanced acknowledgement (CA/CE/CR).
  SCH-11 alone carries the time, no AIL (the department is PV1-3), AIP-3 holds only the
  clinician's name (no id: no provider is stored), PID-13 with a PRS mobile and a NET
  e-mail, NHS number first in PID-3.
- ``v251``: v2.5.1 with an SFT. TQ1-7/TQ1-8 carry the time; no SCH-11; the AIS has no start;
  an AIG (equipment) before the AIL; PID-13 CP; language as an ISO 639-2 code.
- ``v28``: v2.8, FHIR-Converter-style: a stale SCH-11 naming another slot (withdrawn from
  v2.7, so ignored), TQ1 and AIS-4 with offsets, contacts in PID-40 (v2.7+), PV2/OBX/DG1.

:class:`Variation` applies what real feeds do to any family: segment order (PID/PV1 before
SCH), Z-segments and NTE anywhere, timestamp precision and where/how the UTC offset is
written, optional segments left out, groups repeated, escape sequences, line endings. The
expected result does not change with the variation: that is what the corpus tests assert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from openvisit.hl7v2 import er7

FAMILIES = ("epic23", "uk24", "v251", "v28")
#: Per family: (sender MSH-3^MSH-4, endpoint zone, default phone region).
SETUP: dict[str, tuple[str, str, str]] = {
    "epic23": ("EPIC^EPICADT", "America/New_York", "US"),
    "uk24": ("PAS^TESTTRUST", "Europe/London", "GB"),
    "v251": ("SCHED^MAINCAMPUS", "America/Chicago", "US"),
    "v28": ("SCHApp^GHHSFacility", "Europe/Prague", "CZ"),
}
#: How each family writes PID-15 for an ISO 639-1 code.
LANGUAGES = {
    "en": ("English", "en", "eng^English^ISO6392", "eng^^HL70296^eng^English"),
    "es": ("Spanish", "es", "spa^Spanish^ISO6392", "spa^^HL70296^eng^Spanish"),
    "cs": ("Czech", "cs", "ces^Czech^ISO6392", "cze^^HL70296^eng^Czech"),
    "it": ("Italian", "it", "ita^Italian^ISO6392", "ita^^HL70296^eng^Italian"),
    "ar": ("Arabic", "ar", "ara^Arabic^ISO6392", "ara^^HL70296^eng^English-us"),
}
OFFSET_STYLES = ("none", "hhmm", "colon", "hours", "zulu", "before_fraction", "space",
                 "next_part")
PRECISIONS = ("minute", "second", "fraction", "fraction_nodot", "long_fraction")
NEWLINES = ("\r", "\n", "\r\n")
#: Segments a variation may leave out without changing what the message means.
OPTIONAL = ("RGS", "ZCH", "NTE", "SFT", "AIG", "PV2", "OBX", "DG1", "PD1")


@dataclass(frozen=True)
class Booking:
    """What a message says: what OpenVisit must store from it, whatever the variation."""

    start: datetime = datetime(2030, 3, 12, 13, 30, tzinfo=UTC)
    minutes: int = 30
    control_id: str = "CORPUS-1"
    event: str = "S12"
    filler: str = "F-1001"
    placer: str = "P-1001"
    patient_id: str = "E1234567"
    phone: str | None = "+12025550142"
    email: str | None = "test.patient@example.org"
    language: str = "en"
    department: str = "10501"
    facility: str = "OPENVISIT CLINIC"
    provider: str = "1001"
    visit_number: str = "4000123456"

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.minutes)


@dataclass(frozen=True)
class Variation:
    """How a feed writes the same booking (see the module docstring)."""

    newline: str = "\r"
    pid_first: bool = False
    z_segments: tuple[int, ...] = ()
    notes: tuple[int, ...] = ()
    precision: str = "second"
    offset_style: str = "hhmm"
    #: The sender's UTC offset in minutes (when the style writes one).
    sender_offset: int = -300
    omit: frozenset[str] = frozenset()
    repeat_groups: bool = False
    escapes: bool = False
    #: MSH-7 as prose: OpenVisit does not use it, so it must not matter.
    msh7_junk: bool = False


@dataclass(frozen=True)
class Expected:
    """What parsing and storing must give."""

    start: datetime
    end: datetime
    sms: str | None
    email: str | None
    language: str
    department: str | None
    facility: str | None
    provider: str | None
    visit_number: str | None
    patient_ref: str


def expected(family: str, booking: Booking) -> Expected:
    uk = family == "uk24"
    department = "VIRTUAL" if uk else booking.department
    return Expected(
        start=booking.start,
        end=booking.end,
        # Without a mobile (CP), Epic's PRN home number is the SMS number (EHR-SPEC §4: CP,
        # then PRS, then PRN; US numbers cannot be told apart from mobiles). The UK PRN is a
        # London landline, which is never texted.
        sms=booking.phone or ("+12025550100" if family == "epic23" else None),
        email=booking.email,
        language=booking.language,
        department=department,
        facility=booking.facility,
        provider=None if uk else booking.provider,
        visit_number=booking.visit_number,
        patient_ref=("NHS" if uk else "EPI") + "|" + booking.patient_id,
    )


def zone(family: str) -> ZoneInfo:
    return ZoneInfo(SETUP[family][1])


def stamp(instant: datetime, *, family: str, variation: Variation, sub: bool = False) -> str:
    """``instant`` as a TS the way ``variation`` writes it (``sub``: inside a composite)."""
    style = variation.offset_style
    if style == "none":
        local = instant.astimezone(zone(family))
    elif style == "zulu":
        local = instant.astimezone(UTC)
    else:
        local = instant.astimezone(timezone(timedelta(minutes=variation.sender_offset)))
    digits = local.strftime("%Y%m%d%H%M")
    fraction = ""
    if variation.precision != "minute":
        digits += local.strftime("%S")
        fraction = {
            "second": "",
            "fraction": ".0000",
            "fraction_nodot": "000",
            "long_fraction": ".000000",
        }[variation.precision]
    minutes = int(local.utcoffset().total_seconds()) // 60  # type: ignore[union-attr]
    sign, hh, mm = ("-" if minutes < 0 else "+"), abs(minutes) // 60, abs(minutes) % 60
    if style == "none":
        return digits + fraction
    if style == "zulu":
        return digits + fraction + "Z"
    if style == "hours" and mm == 0:
        return f"{digits}{fraction}{sign}{hh:02d}"
    if style == "colon":
        return f"{digits}{fraction}{sign}{hh:02d}:{mm:02d}"
    if style == "before_fraction" and fraction.startswith("."):
        return f"{digits}{sign}{hh:02d}{mm:02d}{fraction}"
    if style == "space":
        return f"{digits}{fraction} {sign}{hh:02d}{mm:02d}"
    if style == "next_part":
        # The offset in the next component (subcomponent inside a composite): an odd place
        # some v2.3 feeds use, where TS.2 (degree of precision) would be.
        return f"{digits}{fraction}{'&' if sub else '^'}{sign}{hh:02d}{mm:02d}"
    return f"{digits}{fraction}{sign}{hh:02d}{mm:02d}"


def _esc(text: str, variation: Variation) -> str:
    """``text`` in one field: delimiters always escaped (\\F\\, \\T\\…), and with
    ``escapes`` spaces and accented letters as hexadecimal escapes (\\X20\\)."""
    text = er7.escape(text)
    if variation.escapes:
        text = "".join(
            f"\\X{c.encode().hex().upper()}\\" if c == " " or ord(c) > 127 else c
            for c in text
        )
    return text


def message(family: str, booking: Booking, variation: Variation = Variation()) -> bytes:
    """The message ``family`` writes for ``booking``, varied by ``variation``."""
    segments = _SEGMENTS[family](booking, variation)
    segments = _vary(segments, family=family, booking=booking, variation=variation)
    text = variation.newline.join(segments) + variation.newline
    return text.encode("iso8859-1" if family == "uk24" else "utf-8")


def _ts(instant: datetime, family: str, variation: Variation, *, sub: bool = False) -> str:
    return stamp(instant, family=family, variation=variation, sub=sub)


def _msh7(family: str, variation: Variation) -> str:
    # MSH-7 is not used: feeds write it any way they like, and that must never refuse.
    return "yesterday at 10:15, 123 ms" if variation.msh7_junk else "20240305101500"


def _epic23(b: Booking, v: Variation) -> list[str]:
    f = "epic23"
    start = _ts(b.start, f, v)
    start_sub, end_sub = _ts(b.start, f, v, sub=True), _ts(b.end, f, v, sub=True)
    telecom = ["(202)555-0100^PRN^PH^^^202^5550100"]
    if b.phone:
        telecom.append(f"{b.phone}^PRN^CP")
    if b.email:
        telecom.append(f"^NET^Internet^{b.email}")
    language = LANGUAGES[b.language][0]
    return [
        f"MSH|^~\\&|EPIC|EPICADT|OPENVISIT|TELEHEALTH|{_msh7(f, v)}||SIU^{b.event}|"
        f"{b.control_id}|P|2.3",
        f"SCH|{b.placer}|{b.filler}^EPIC|||||ROUTINE^Routine|VIDEO^Video Visit|{b.minutes}|MIN|"
        f"^^{b.minutes}^{start_sub}^{end_sub}|||||{b.provider}^PROVIDER^TEST|||||||||"
        "Booked^Booked",
        f"ZCH|{b.filler}|VIDEO|Y|TELEHEALTH DEPT",
        f"PID|1||{b.patient_id}^^^EPI^MR~900000001^^^SSA^SS||TEST^PATIENT||19800101|F|||"
        f"1 TEST ST^^MADISON^WI^53703^USA||{'~'.join(telecom)}|(202)555-0177^WPN^PH|{language}",
        f"PV1|1|O|TELEHEALTH^^^OPENVISIT CLINIC||||{b.provider}^PROVIDER^TEST||||||||||||"
        f"{b.visit_number}",
        "RGS|1|A",
        f"AIS|1|A|VIDEO^Video Visit|{start}|0|MIN|{b.minutes}|MIN||Booked",
        f"AIL|1|A|{_esc(b.department, v)}^^^{_esc(b.facility, v)}|||{start}|||{b.minutes}|MIN||"
        "Booked",
        f"AIP|1|A|{b.provider}^PROVIDER^TEST|||{start}|||{b.minutes}|MIN||Booked",
    ]


def _uk24(b: Booking, v: Variation) -> list[str]:
    f = "uk24"
    start_sub, end_sub = _ts(b.start, f, v, sub=True), _ts(b.end, f, v, sub=True)
    telecom = ["020 7946 0321^PRN^PH"]
    if b.phone:
        telecom.append(f"{b.phone}^PRS^CP")
    if b.email:
        telecom.append(f"^NET^Internet^{b.email}")
    return [
        f"MSH|^~\\&|PAS|TESTTRUST|PKB|PKB|{_msh7(f, v)}||SIU^{b.event}^SIU_S12|{b.control_id}|"
        "P|2.4|||AL|NE||8859/1",
        f"SCH|{b.placer}^PAS|{b.filler}^PAS|||||FOLLOWUP^Follow-up|VIDEO^Video consultation|"
        f"{b.minutes}|MIN|^^{b.minutes}^{start_sub}^{end_sub}||||||||||||||BOOKED^Booked",
        f"PID|1||{b.patient_id}^^^NHS^NH~T1234567^^^TESTTRUST^MR||TEST^PATIENT||19700101|U|||||"
        f"{'~'.join(telecom)}||{LANGUAGES[b.language][1]}",
        "PD1|||TEST SURGERY^^T1234",
        f"PV1|1|O|VIRTUAL^^^{_esc(b.facility, v)}||||||||||||||||{b.visit_number}",
        "RGS|1",
        # Only the clinician's name where the personnel id belongs: no provider is stored.
        "AIP|1||Dr Test Clinician|CONSULTANT^Consultant",
    ]


def _v251(b: Booking, v: Variation) -> list[str]:
    f = "v251"
    telecom = f"^PRN^CP^^1^202^{b.phone[-7:]}" if b.phone else ""
    if b.email:
        telecom += ("~" if telecom else "") + f"^NET^Internet^{b.email}"
    return [
        f"MSH|^~\\&|SCHED|MAINCAMPUS|OPENVISIT|TELEHEALTH|{_msh7(f, v)}||"
        f"SIU^{b.event}^SIU_S12|{b.control_id}|P|2.5.1",
        "SFT|Scheduling Vendor^L|10.2|SCHED|1234",
        f"SCH|{b.placer}^SCHED|{b.filler}^SCHED|||||ROUTINE^Routine^HL70276|"
        "VIDEO^Video visit^L|||||||||||||||||Booked^Booked^HL70278",
        f"TQ1|1||||||{_ts(b.start, f, v)}|{_ts(b.end, f, v)}|R",
        f"PID|1||{b.patient_id}^^^EPI^MR||TEST^PATIENT||19800101|F|||||{telecom}||"
        f"{LANGUAGES[b.language][2]}",
        f"PV1|1|O|CLINIC^^^MAIN CAMPUS||||||||||||||||{b.visit_number}",
        "PV2|||VIDEO^Video visit",
        "RGS|1|A|VIDEO-SERVICES",
        "AIS|1|A|VIDEO^Video Visit^L||||||",
        "AIG|1|A|CAM-7^Camera cart^L|EQUIP^Equipment",
        f"AIL|1|A|{_esc(b.department, v)}^^^{_esc(b.facility, v)}|C^Clinic^HL70305",
        f"AIP|1|A|{b.provider}^PROVIDER^TEST^^^^^^NPI&2.16.840.1.113883.4.6&ISO|"
        "MD^Physician^L",
    ]


def _v28(b: Booking, v: Variation) -> list[str]:
    f = "v28"
    other = b.start - timedelta(days=300)  # a stale SCH-11: withdrawn, never read
    telecom = []
    if b.phone:
        telecom.append(f"{b.phone}^PRN^CP")
    if b.email:
        telecom.append(f"^NET^Internet^{b.email}")
    return [
        f"MSH|^~\\&|SCHApp|GHHSFacility^2.16.840.1.122848.1.30^ISO|EHRApp^1.Aux^ISO|"
        f"GHHRFacility|{_msh7(f, v)}|SECURITY|SIU^{b.event}^SIU_S12|{b.control_id}|P|2.8|||||"
        "USA||en-US",
        f"SCH|{b.placer}|{b.filler}||||Add|EMERGENCY|Normal|60|s|"
        f"2^^2 hours^{_ts(other, f, v, sub=True)}^{_ts(other, f, v, sub=True)}^R|||||||||||||"
        "||Booked|",
        f"TQ1|||||||{_ts(b.start, f, v)}|{_ts(b.end, f, v)}|A",
        "NTE|1||Appointment booked",
        _fields("PID", {1: "1", 3: f"{b.patient_id}^5^M11^EPI^MR^GOOD HEALTH HOSPITAL",
                        5: "EVERYMAN^ADAM", 7: "19880818", 8: "M",
                        15: LANGUAGES[b.language][3], 40: "~".join(telecom)}),
        f"PV1|1|O|055^Room01^^GH Clinic||||0210^ATTEND^AARON^A||||||||||||{b.visit_number}",
        "PV2|||116290004^Acute abdominal pain^SCT",
        "OBX|1|NM|8867-4^Heart rate^LN||72|beats/min^^ISO|60-120||||F",
        "DG1|1||64766004^Ulcerative colitis^SCT",
        "RGS|001|",
        f"AIS|001|A|76164006^Biopsy of colon^SCT|{_ts(b.start, f, v)}|||{b.minutes}|"
        "min^Minutes^ISO||Booked",
        "NTE|1||Nursing staff instructions",
        f"AIL|001||{_esc(b.department, v)}^Room01^^{_esc(b.facility, v)}|C^Clinic^HL70305||"
        f"{_ts(b.start, f, v)}|||{b.minutes}|min^Minutes^ISO||Booked|",
        f"AIP|001||{b.provider}^GE^Robert^C|010^Gastroenterologist^L||{_ts(b.start, f, v)}|||"
        f"{b.minutes}|min^Minutes^ISO||Booked|",
    ]


def _fields(name: str, values: dict[int, str]) -> str:
    """A segment with ``values`` at their field numbers (the others empty)."""
    return "|".join([name, *(values.get(n, "") for n in range(1, max(values) + 1))])


_SEGMENTS = {"epic23": _epic23, "uk24": _uk24, "v251": _v251, "v28": _v28}


def _vary(segments: list[str], *, family: str, booking: Booking, variation: Variation) -> list[str]:
    v = variation
    out = [s for s in segments if s[:3] not in v.omit]
    if v.repeat_groups:
        out = _repeat(out, family=family, booking=booking, variation=v)
    if v.pid_first:
        moving = [s for s in out if s[:3] in ("PID", "PD1", "PV1", "PV2")]
        rest = [s for s in out if s not in moving]
        out = [rest[0], *moving, *rest[1:]]
    for n, position in enumerate(v.notes):
        note = f"NTE|{n + 1}||Note {n + 1}: bring your \\T\\ ID \\F\\ arrive early\\.br\\thanks"
        out.insert(1 + position % len(out), note)
    for n, position in enumerate(v.z_segments):
        out.insert(1 + position % len(out), f"ZX{n % 10}|{booking.filler}|Z\\S\\DATA|{n}")
    return out


def _repeat(out: list[str], *, family: str, booking: Booking, variation: Variation) -> list[str]:
    """Repeat the patient group (same patient) and add a later resource group: neither
    changes what is stored (the first patient group, the earliest start, the first AIL/AIP)."""
    pid = next((s for s in out if s.startswith("PID")), None)
    later = booking.start + timedelta(hours=2)
    extra = [
        "RGS|2|A",
        f"AIS|2|A|LAB^Blood test|{_ts(later, family, variation)}|||15|MIN",
        "AIL|2|A|LAB-2^^^LAB BUILDING",
        "AIP|2|A|2002^NURSE^TEST",
    ]
    if family in ("uk24",):
        # The UK family has no AIS/AIL: its later group must not add a department or a start.
        extra = ["RGS|2", "AIP|2||Nurse Test Person"]
    if family == "v251":
        extra = ["RGS|2|A", "AIS|2|A|LAB^Blood test", "AIL|2|A|LAB-2^^^LAB BUILDING",
                 "AIP|2|A|2002^NURSE^TEST"]
    result = [*out, *extra]
    if pid is not None:
        index = result.index(pid)
        result.insert(index + 1, pid)
    return result


@dataclass(frozen=True)
class Broken:
    """A truly broken message of a family, and what the answer must say."""

    name: str
    family: str
    text: bytes
    code: str  # AE or AR
    where: str
    words: tuple[str, ...] = field(default=())
