"""Patient contact points from PID: the SMS number, the e-mail address and the language.

The choice of number is the EHR-SPEC §4 judgement: across PID-13 (home), PID-14 (business) and
PID-40 (v2.7+ telecom) take the first XTN repetition whose equipment (XTN-3) is CP, else whose
use (XTN-2) is PRS, else PRN. HL7 v2.5.1 Ch. 3 §3.4.2 (PID) and Ch. 2A (XTN: 1 number, 2 use,
3 equipment, 4 e-mail, 5 country, 6 area, 7 local, 12 unformatted).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import phonenumbers

from openvisit.hl7v2 import er7, languages

_TELECOM_FIELDS = (13, 14, 40)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# A 2.3-style XTN-1 reads "[NNN] [(999)]999-9999 [X99999] [B99999] [C any text]": keep only the
# leading number so extensions, beepers and comments do not garble it.
_LEADING_NUMBER = re.compile(r"[\d\s()+./-]+")
_NOT_FOR_SMS = {
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
    phonenumbers.PhoneNumberType.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.SHARED_COST,
    phonenumbers.PhoneNumberType.PAGER,
    phonenumbers.PhoneNumberType.UAN,
    phonenumbers.PhoneNumberType.VOICEMAIL,
}


def _telecoms(pid: er7.Segment) -> Iterator[er7.Value]:
    for field in _TELECOM_FIELDS:
        yield from pid.repetitions(field)


def sms_number(pid: er7.Segment | None, *, default_region: str) -> str | None:
    """Choose the patient's SMS number from PID-13/14/40 and return it in E.164.

    Returns ``None`` when no repetition yields a number that libphonenumber deems valid and able
    to take texts (landlines, pagers and toll-free lines are skipped, because a text to them is
    lost); never raises. Note that Ofcom's drama range (+44 7700 900xxx) is not valid there.
    """
    if pid is None:
        return None
    telecoms = list(_telecoms(pid))
    # (component, code): XTN-3 equipment CP (cell), then XTN-2 use PRS, then PRN.
    for component, code in ((3, "CP"), (2, "PRS"), (2, "PRN")):
        for value in telecoms:
            if value.get(component).upper() == code:
                number = _xtn_number(value, default_region=default_region)
                if number is not None:
                    return number
    return None


def _xtn_number(value: er7.Value, *, default_region: str) -> str | None:
    country, area, local = value.get(5), value.get(6), value.get(7)
    candidates: list[tuple[str, str]] = []
    if local:
        digits = re.sub(r"\D", "", country).lstrip("0")
        if digits:
            candidates.append((f"+{digits}{area}{local}", default_region))
            # Some senders keep the national trunk prefix in XTN-6 ("020"); read the pair as a
            # national number of the country XTN-5 names.
            region = phonenumbers.region_code_for_country_code(int(digits[:3]))
            candidates.append((f"{area}{local}", region))
        else:
            candidates.append((f"{area}{local}", default_region))
    for text in (value.get(1), value.get(12)):
        match = _LEADING_NUMBER.match(text)
        if match:
            candidates.append((match.group(), default_region))
    for text, region in candidates:
        number = normalise_phone(text, region=region)
        if number is not None:
            return number
    return None


def normalise_phone(text: str, *, region: str) -> str | None:
    """Return ``text`` as an E.164 number that can take texts, or ``None``; never raises.

    ``region`` (ISO 3166 alpha-2, e.g. ``"US"``) reads numbers written without a country code.
    """
    if not text or len(text) > 64:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.number_type(number) in _NOT_FOR_SMS:
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def email(pid: er7.Segment | None) -> str | None:
    """Return the first e-mail address in PID-13/14/40 (XTN-2 = NET or XTN-3 = Internet).

    The address is read from XTN-4, or from XTN-1 when a sender puts it there; text that does
    not look like an address is skipped. Returns ``None`` when there is none.
    """
    if pid is None:
        return None
    for value in _telecoms(pid):
        if value.get(2).upper() != "NET" and value.get(3).upper() != "INTERNET":
            continue
        for text in (value.get(4), value.get(1)):
            if len(text) <= 254 and _EMAIL.fullmatch(text):
                return text
    return None


def language(pid: er7.Segment | None) -> str | None:
    """Return PID-15 (primary language) as a lower-case ISO 639-1 code, or ``None``.

    Tries the identifier (component 1), the alternate identifier (4), then the texts (2, 5);
    each may be an ISO 639-1/639-2 code, a BCP 47 tag (``en-US``) or an English or native
    language name (``English``, ``Español``), looked up in the small tables of
    :mod:`.languages`. Table 0296 is user-defined, so local codes that match none of these
    give ``None``.
    """
    if pid is None:
        return None
    value = pid.first(15)
    for component in (1, 4, 2, 5):
        code = _iso639_1(value.get(component))
        if code is not None:
            return code
    return None


def _iso639_1(text: str) -> str | None:
    text = text.strip().lower().replace("_", "-")
    primary = text.split("-")[0].strip()
    if not primary:
        return None
    tables = languages.load()
    if len(primary) == 2 and primary in tables["codes"]:
        return primary
    alias = tables["aliases"].get(primary)
    if alias is not None:
        return alias
    for candidate in (text, primary):
        if candidate in tables["english"]:
            return tables["english"][candidate]
    return tables["native"].get(text) or tables["native"].get(primary)
