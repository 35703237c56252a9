"""Where the department and the provider of an appointment are in an SIU message.

HL7 v2.5.1 Ch. 10 §10.6.3 (RGS-3 resource group id), §10.6.5 (AIG-3/4 resource id and
type), §10.6.6 (AIL-3 location, a PL), §10.6.7 (AIP-3 personnel, an XCN); Ch. 3 §3.4.3.3
(PV1-3 assigned patient location, a PL); Ch. 2A (PL: 1 point of care, 4 facility; XCN: 1 id
number, 2 family name, 9 assigning authority, 13 identifier type).

The department is the first of: AIL-3 (the location booked), PV1-3 (where the visit is
assigned), an AIG whose type (AIG-4) says it is a department or location, RGS-3. The
provider is AIP-3's id (XCN-1) only when it is one: a value with spaces or commas, or a bare
word with nothing else in the XCN, is a name written where the id belongs, and OpenVisit
never stores a name, so it stores no provider rather than refusing the booking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from openvisit.hl7v2 import er7
from openvisit.hl7v2.errors import ErrorLocation
from openvisit.hl7v2.structure import SiuStructure

#: AIG-4 (resource type) values that mean the resource is the department or a location.
DEPARTMENT_TYPES = frozenset({"d", "dep", "dept", "department", "l", "loc", "location",
                              "clinic", "unit", "ward", "service"})
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/#@-]*")


@dataclass(frozen=True, slots=True)
class Department:
    """A department as the message names it: point of care and facility, and where."""

    point_of_care: str | None = None
    facility: str | None = None
    location: ErrorLocation | None = None


def department(structure: SiuStructure) -> Department:
    """The appointment's department (see the module docstring); empty when none is named."""
    for ail in structure.resource_segments("AIL"):
        found = _place(ail.first(3), location=ail.at(3))
        if found is not None:
            return found
    pv1 = structure.pv1
    if pv1 is not None:
        found = _place(pv1.first(3), location=pv1.at(3))
        if found is not None:
            return found
    for aig in structure.resource_segments("AIG"):
        kind = {aig.get(4).lower(), aig.get(4, component=2).lower()}
        code = aig.get(3) or aig.get(3, component=2)
        if kind & DEPARTMENT_TYPES and code:
            return Department(code, None, aig.at(3))
    for group in structure.resources:
        if group.rgs is not None:
            code = group.rgs.get(3) or group.rgs.get(3, component=2)
            if code:
                return Department(code, None, group.rgs.at(3))
    return Department()


def _place(value: er7.Value, *, location: ErrorLocation) -> Department | None:
    """A PL's point of care (1) and facility (4, an HD: namespace else universal id)."""
    point = value.get(1)
    facility = value.get(4) or value.get(4, subcomponent=2)
    if not point and not facility:
        return None
    return Department(point or None, facility or None, location)


def provider(structure: SiuStructure) -> tuple[str | None, ErrorLocation | None]:
    """The first AIP-3 that holds a personnel id, and where; ``(None, None)`` when none does."""
    for aip in structure.resource_segments("AIP"):
        for value in aip.repetitions(3):
            if is_id(value):
                return value.get(1), aip.at(3)
    return None, None


def is_id(value: er7.Value) -> bool:
    """Whether XCN-1 of ``value`` is an id rather than a name written in its place.

    An id has no spaces or commas, and has a digit or comes with the rest of an XCN (a
    family name, an assigning authority or an identifier type): ``1001``, ``C1234567``,
    ``JSMITH^SMITH^JOHN``. ``Dr Jane Smith``, ``SMITH, JANE`` and a bare ``SMITH`` are names.
    """
    text = value.get(1)
    if not text or not _ID.fullmatch(text):
        return False
    if any(c.isdigit() for c in text):
        return True
    return bool(value.get(2) or value.get(9) or value.get(13))
