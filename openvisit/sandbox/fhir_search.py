"""FHIR R4 search over the sandbox store (FHIR R4 search.html).

Supported: ``_id`` and ``_tag`` (``meta.tag``, a token ``system|code``); per-type parameters
of kind token, reference, date and string (see ``SEARCH_PARAMS``); OR with commas, AND by
repeating a parameter; date prefixes ``eq ne gt lt ge le sa eb`` compared as ranges at the
precision given (search.html §3.1.1.4.3);
reference modifiers ``:<Type>``, string modifiers ``:exact`` / ``:contains``; ``_count``,
``_offset`` and ``_sort``. Unknown parameters are ignored and reported (lenient handling,
search.html §3.1.1.1), or refused with ``Prefer: handling=strict``.
"""

from __future__ import annotations

import calendar
import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from openvisit.sandbox.errors import FhirError
from openvisit.sandbox.fhir_params import COMMON_PARAMS, SEARCH_PARAMS, Param

Resource = dict[str, Any]
DateRange = tuple[datetime, datetime]

_MIN = datetime.min.replace(tzinfo=UTC) + timedelta(days=2)
_MAX = datetime.max.replace(tzinfo=UTC) - timedelta(days=2)
_DATE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_offset",
        "_sort",
        "_format",
        "_pretty",
        "_summary",
        "_elements",
        "_total",
        "_include",
        "_revinclude",
    }
)
DEFAULT_COUNT = 50
MAX_COUNT = 1000


@dataclass
class SearchResult:
    matches: list[Resource]
    count: int
    offset: int
    used: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def search(
    resources: list[Resource],
    *,
    resource_type: str,
    params: list[tuple[str, str]],
    tz: tzinfo,
    strict: bool = False,
) -> SearchResult:
    """Filter, sort and window ``resources``; raises 400 (FhirError) for bad values."""
    specs = {**COMMON_PARAMS, **SEARCH_PARAMS.get(resource_type, {})}
    result = SearchResult(matches=[], count=DEFAULT_COUNT, offset=0)
    filters: list[Callable[[Resource], bool]] = []
    sort_keys: list[str] = []
    for raw_name, value in params:
        name, _, modifier = raw_name.partition(":")
        if name == "_count":
            result.count = min(_int(raw_name, value), MAX_COUNT)
        elif name == "_offset":
            result.offset = _int(raw_name, value)
        elif name == "_sort":
            sort_keys = [k for k in value.split(",") if k]
        elif name in RESULT_PARAMS:
            result.ignored.append(raw_name)
        elif name in specs:
            filters.append(_matcher(specs[name], modifier, value, tz=tz))
        elif strict:
            raise FhirError(
                f"unknown search parameter {raw_name!r}",
                status_code=400,
                issue_code="not-supported",
            )
        else:
            result.ignored.append(raw_name)
            continue
        if name in specs or name in {"_count", "_offset", "_sort"}:
            result.used.append((raw_name, value))
    matches = [r for r in resources if all(f(r) for f in filters)]
    for key in reversed(sort_keys):
        desc = key.startswith("-")
        spec = specs.get(key.lstrip("-"))
        if spec is None:
            raise FhirError(f"cannot sort by {key!r}", status_code=400, issue_code="not-supported")
        matches.sort(key=functools.partial(_sort_key, spec=spec, tz=tz), reverse=desc)
    result.matches = matches
    return result


def _int(name: str, value: str) -> int:
    if not value.isdigit():
        raise FhirError(
            f"{name} must be a non-negative integer", status_code=400, issue_code="invalid"
        )
    return int(value)


def _walk(node: Any, path: str) -> list[Any]:
    current = [node]
    for part in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, dict) and part in item:
                value = item[part]
                nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    return current


def _values(resource: Resource, spec: Param) -> list[Any]:
    return [v for path in spec.paths for v in _walk(resource, path)]


def _matcher(spec: Param, modifier: str, raw: str, *, tz: tzinfo) -> Callable[[Resource], bool]:
    alternatives = [v for v in raw.split(",") if v != ""]
    if not alternatives:
        raise FhirError("empty search value", status_code=400, issue_code="invalid")
    if spec.kind == "reference":
        if modifier and not re.fullmatch(r"[A-Z][A-Za-z]+", modifier):
            raise FhirError(
                f"unsupported modifier :{modifier}", status_code=400, issue_code="not-supported"
            )
        wanted = [_ref_key(v, modifier or spec.target) for v in alternatives]
        return lambda r: any(_ref_matches(ref, w) for ref in _values(r, spec) for w in wanted)
    if modifier and not (spec.kind == "string" and modifier in {"exact", "contains"}):
        raise FhirError(
            f"unsupported modifier :{modifier}", status_code=400, issue_code="not-supported"
        )
    if spec.kind == "id":
        return lambda r: r.get("id") in alternatives
    if spec.kind == "token":
        return lambda r: any(_token_matches(v, a) for v in _values(r, spec) for a in alternatives)
    if spec.kind == "string":
        return lambda r: any(
            _string_matches(s, w, modifier)
            for v in _values(r, spec)
            for s in _strings(v)
            for w in alternatives
        )
    tests = [_date_test(a, tz) for a in alternatives]
    return lambda r: any(t(rng) for rng in _date_ranges(_values(r, spec), tz) for t in tests)


# -- references ---------------------------------------------------------------------------


def _ref_key(value: str, type_hint: str | None) -> tuple[str | None, str]:
    parts = [p for p in value.split("/_history/")[0].split("/") if p]
    if len(parts) >= 2:
        rtype, rid = parts[-2], parts[-1]
        if type_hint is not None and rtype != type_hint:
            return ("\0", rid)  # cannot match
        return (rtype, rid)
    return (type_hint, value)


def _ref_matches(reference: Any, wanted: tuple[str | None, str]) -> bool:
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return False
    rtype, rid = _ref_key(reference["reference"], None)
    return rid == wanted[1] and (wanted[0] is None or rtype == wanted[0])


# -- tokens -------------------------------------------------------------------------------


def _codings(value: Any) -> list[tuple[str | None, str]]:
    if isinstance(value, bool):
        return [(None, "true" if value else "false")]
    if isinstance(value, str):
        return [(None, value)]
    if isinstance(value, dict):
        if "coding" in value:
            return [c for item in value["coding"] for c in _codings(item)]
        if "value" in value and "code" not in value:  # Identifier
            return [(value.get("system"), str(value["value"]))]
        if "code" in value:
            return [(value.get("system"), str(value["code"]))]
    return []


def _token_matches(value: Any, wanted: str) -> bool:
    system, sep, code = wanted.partition("|")
    for have_system, have_code in _codings(value):
        if not sep:
            if have_code == wanted:
                return True
        elif system == "" and have_system is None and have_code == code:
            return True
        elif system and have_system == system and (code == "" or have_code == code):
            return True
    return False


# -- strings ------------------------------------------------------------------------------


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):  # HumanName or Address
        parts = [
            value.get("text"),
            value.get("family"),
            *value.get("given", []),
            *value.get("prefix", []),
            *value.get("suffix", []),
        ]
        return [p for p in parts if isinstance(p, str)]
    return []


def _string_matches(have: str, wanted: str, modifier: str) -> bool:
    if modifier == "exact":  # case- and accent-sensitive (search.html §3.1.1.5.1)
        return have == wanted
    if modifier == "contains":
        return _fold(wanted) in _fold(have)
    return _fold(have).startswith(_fold(wanted))


# -- dates --------------------------------------------------------------------------------


def date_range(value: str, *, tz: tzinfo) -> DateRange:
    """The instants a FHIR date/dateTime/instant covers, as ``[low, high)``.

    A value without an offset is read in ``tz`` (the sandbox's local zone). Raises 400 when
    ``value`` is not a FHIR date.
    """
    match = _DATE.fullmatch(value)
    if match is None:
        raise FhirError(f"not a FHIR date: {value!r}", status_code=400, issue_code="invalid")
    year, month, day, hour, minute, second, offset = match.groups()
    zone: tzinfo = tz
    if offset == "Z":
        zone = UTC
    elif offset:
        sign = 1 if offset[0] == "+" else -1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        if month is None:
            low = datetime(int(year), 1, 1, tzinfo=zone)
            return low, low.replace(year=low.year + 1)
        if day is None:
            low = datetime(int(year), int(month), 1, tzinfo=zone)
            days = calendar.monthrange(low.year, low.month)[1]
            return low, low + timedelta(days=days)
        if hour is None:
            low = datetime(int(year), int(month), int(day), tzinfo=zone)
            return low, low + timedelta(days=1)
        low = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=zone
        )
    except ValueError as exc:
        raise FhirError(
            f"not a FHIR date: {value!r}", status_code=400, issue_code="invalid"
        ) from exc
    return low, low + (timedelta(seconds=1) if second is not None else timedelta(minutes=1))


def _date_ranges(values: list[Any], tz: tzinfo) -> list[DateRange]:
    ranges: list[DateRange] = []
    for value in values:
        if isinstance(value, str):
            ranges.append(date_range(value, tz=tz))
        elif isinstance(value, dict) and ("start" in value or "end" in value):  # Period
            low = date_range(value["start"], tz=tz)[0] if "start" in value else _MIN
            high = date_range(value["end"], tz=tz)[1] if "end" in value else _MAX
            ranges.append((low, high))
    return ranges


def _date_test(raw: str, tz: tzinfo) -> Callable[[DateRange], bool]:
    prefix = raw[:2] if raw[:2] in _PREFIXES else "eq"
    low, high = date_range(raw[2:] if raw[:2] in _PREFIXES else raw, tz=tz)

    def contained(r: DateRange) -> bool:
        return low <= r[0] and r[1] <= high

    tests: dict[str, Callable[[DateRange], bool]] = {
        "eq": contained,
        "ne": lambda r: not contained(r),
        "gt": lambda r: r[1] > high,
        "lt": lambda r: r[0] < low,
        "ge": lambda r: r[1] > high or contained(r),
        "le": lambda r: r[0] < low or contained(r),
        "sa": lambda r: r[0] >= high,
        "eb": lambda r: r[1] <= low,
    }
    return tests[prefix]


def _sort_key(resource: Resource, spec: Param, tz: tzinfo) -> tuple[int, Any]:
    values = _values(resource, spec)
    if spec.kind == "date":
        ranges = _date_ranges(values, tz)
        return (0, ranges[0][0]) if ranges else (1, _MAX)
    texts = [s for v in values for s in (_strings(v) or [c for _, c in _codings(v)])]
    if spec.kind == "id":
        texts = [str(resource.get("id", ""))]
    return (0, _fold(texts[0])) if texts else (1, "")
