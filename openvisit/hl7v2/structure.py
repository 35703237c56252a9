"""The SIU message structure, found by segment name in whatever order a feed sends it.

HL7 v2.5.1 Ch. 10 §10.4 (SIU_S12): ``MSH [SFT] [UAC] SCH [TQ1] [NTE] {[PID [PD1] [PRT] [PV1]
[PV2] [PRT] [OBX] [DG1]]} {RGS [AIS [NTE]] [AIG [NTE]] [AIL [NTE]] [AIP [NTE]]}``; v2.3 has
no TQ1, PD1 or PRT. Real feeds put PID/PV1 before SCH, leave out RGS, repeat groups and add
NTE and Z-segments (Epic's ZCH) anywhere, so segments are grouped by what they are, not by
where they stand:

- a PID opens a patient group; PD1, PV1, PV2, OBX and DG1 belong to the patient group open at
  that point (a PV1 sent before any PID joins the first one);
- an RGS opens a resource group; AIS, AIG, AIL and AIP belong to the resource group open at
  that point (an implicit one when the feed sends no RGS);
- NTE, Z-segments and segments SIU does not define are ignored.

Only what is really ambiguous is refused (0357 code 100, naming both segments): two SCH
(two appointments), two PIDs naming different patients, or two PV1 giving different visit
numbers (which encounter is meant?).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openvisit.hl7v2 import er7
from openvisit.hl7v2.errors import ErrorLocation, SegmentSequenceError

_PATIENT_PARTS = frozenset({"PD1", "PV1", "PV2", "OBX", "DG1"})
_RESOURCES = frozenset({"AIS", "AIG", "AIL", "AIP"})


@dataclass(slots=True)
class PatientGroup:
    """One patient: a PID (``None`` when a PV1 came without one) and its visit segments."""

    pid: er7.Segment | None = None
    visits: list[er7.Segment] = field(default_factory=list)

    @property
    def pv1(self) -> er7.Segment | None:
        """The group's first PV1 (patient visit), or ``None``."""
        return next((s for s in self.visits if s.name == "PV1"), None)


@dataclass(slots=True)
class ResourceGroup:
    """One RGS (``None`` when the feed sent none) and the AIS/AIG/AIL/AIP that follow it."""

    rgs: er7.Segment | None = None
    segments: list[er7.Segment] = field(default_factory=list)

    def all(self, name: str) -> list[er7.Segment]:
        """The group's segments with this id, in message order."""
        return [s for s in self.segments if s.name == name]


@dataclass(frozen=True, slots=True)
class SiuStructure:
    """The segments of one SIU message, grouped (see the module docstring)."""

    msh: er7.Segment
    sch: er7.Segment
    timing: tuple[er7.Segment, ...]
    patients: tuple[PatientGroup, ...]
    resources: tuple[ResourceGroup, ...]

    @property
    def pid(self) -> er7.Segment | None:
        """The patient's PID (the first patient group's), or ``None``."""
        return next((p.pid for p in self.patients if p.pid is not None), None)

    @property
    def pv1(self) -> er7.Segment | None:
        """The first PV1 of the message's patient, or ``None``."""
        return next((p.pv1 for p in self.patients if p.pv1 is not None), None)

    def resource_segments(self, name: str) -> list[er7.Segment]:
        """Every AIS, AIG, AIL or AIP (``name``) of every resource group, in message order."""
        return [s for group in self.resources for s in group.all(name)]


def structure_of(message: er7.Er7Message) -> SiuStructure:
    """Group the segments of a tokenised SIU message.

    Raises :class:`SegmentSequenceError` (0357: 100) when there is no SCH, more than one MSH
    or SCH, or the message is ambiguous about its patient or encounter.
    """
    msh, *rest = message.segments
    schs: list[er7.Segment] = []
    timing: list[er7.Segment] = []
    patients: list[PatientGroup] = []
    resources: list[ResourceGroup] = []
    waiting = PatientGroup()  # visit segments seen before any PID
    for segment in rest:
        name = segment.name
        if name == "MSH":
            raise SegmentSequenceError(
                "the message holds more than one MSH; send one message per MLLP frame",
                location=segment.at(),
            )
        if name == "SCH":
            schs.append(segment)
        elif name == "TQ1":
            timing.append(segment)
        elif name == "PID":
            group = PatientGroup(segment)
            if not patients and waiting.visits:
                group.visits, waiting.visits = waiting.visits, []
            patients.append(group)
        elif name in _PATIENT_PARTS:
            (patients[-1] if patients else waiting).visits.append(segment)
        elif name == "RGS":
            resources.append(ResourceGroup(segment))
        elif name in _RESOURCES:
            if not resources:
                resources.append(ResourceGroup())
            resources[-1].segments.append(segment)
    if waiting.visits:
        patients.append(waiting)
    if not schs:
        raise SegmentSequenceError(
            "the SIU message has no SCH (schedule activity) segment", location=ErrorLocation("SCH")
        )
    if len(schs) > 1:
        raise SegmentSequenceError(
            "the SIU message holds more than one SCH segment, that is more than one "
            "appointment; send one SIU message per appointment",
            location=schs[1].at(),
        )
    _check_one_patient(patients)
    return SiuStructure(msh, schs[0], tuple(timing), tuple(patients), tuple(resources))


def _identity(pid: er7.Segment) -> frozenset[tuple[str, str]]:
    """The patient's PID-3 identifiers as (id, assigning authority) pairs."""
    return frozenset(
        (rep.get(1), rep.get(4) or rep.get(4, subcomponent=2))
        for rep in pid.repetitions(3)
        if rep.get(1)
    )


def _check_one_patient(patients: list[PatientGroup]) -> None:
    pids = [p.pid for p in patients if p.pid is not None]
    first_ids = _identity(pids[0]) if pids else frozenset()
    for other in pids[1:]:
        ids = _identity(other)
        if first_ids and ids and not first_ids & ids:
            raise SegmentSequenceError(
                f"{pids[0].name}[1] and {other.at()} name different patients (no PID-3 "
                "identifier in common); OpenVisit keeps one patient per appointment, so send "
                "one SIU message per patient",
                location=other.at(),
            )
    visits = [s for p in patients for s in p.visits if s.name == "PV1" and s.get(19)]
    for other in visits[1:]:
        if other.get(19) != visits[0].get(19):
            raise SegmentSequenceError(
                f"{visits[0].at()} and {other.at()} give different visit numbers (PV1-19): "
                "which encounter the appointment belongs to is ambiguous",
                location=other.at(19),
            )
