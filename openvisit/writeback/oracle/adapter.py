"""Oracle Health (Cerner Millennium) profile (EHR-SPEC §3).

- ``Appointment.status`` by ``PATCH`` (``application/json-patch+json``, ``If-Match:
  W/"<version>"``) along Oracle's allowed transitions only: proposed→booked|cancelled,
  booked→arrived|checked-in|cancelled, arrived→checked-in|cancelled,
  checked-in→fulfilled|cancelled. A target that needs two steps (arrived→fulfilled) is sent
  as two PATCHes, each on the version the previous one returned; a status Oracle cannot reach
  from the current one is a permanent failure naming both.
- Errors: 412 (version changed) and 409 (conflicting update) read the Appointment again and
  retry at once; 423 (locked) and 424 (failed dependency) and 429/5xx retry later.
- Video-visit links go into the contained HealthcareService rooms "Patient Virtual Meeting
  Room" and "Provider Virtual Meeting Room" as ``telecom[0]`` ``{system: url, value,
  period}`` (URLs ≤ 255 characters). Oracle's sample and its patch note disagree on which
  index is which, so the room is looked up by its type, and the patch ``test`` s the room's id
  at that index before replacing: if the order changed meanwhile the whole patch is refused.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from openvisit.writeback import adapter as a
from openvisit.writeback import fhir
from openvisit.writeback.fhir import FhirWriteError
from openvisit.writeback.generic.adapter import (
    APPOINTMENT_STATUS_FOR,
    CONFLICT_ROUNDS,
    GenericAdapter,
    facts_of,
)

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "proposed": ("booked", "cancelled"),
    "booked": ("arrived", "checked-in", "cancelled"),
    "arrived": ("checked-in", "cancelled"),
    "checked-in": ("fulfilled", "cancelled"),
}
PATIENT_ROOM = "Patient Virtual Meeting Room"
PROVIDER_ROOM = "Provider Virtual Meeting Room"
MAX_URL = 255


def status_path(current: str, target: str) -> list[str] | None:
    """The shortest chain of allowed statuses from ``current`` to ``target`` (``[]`` when
    already there, None when Oracle allows no way)."""
    if current == target:
        return []
    seen, queue = {current}, deque([(current, list[str]())])
    while queue:
        status, path = queue.popleft()
        for nxt in TRANSITIONS.get(status, ()):
            if nxt == target:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, [*path, nxt]))
    return None


def _is_room(resource: Mapping[str, Any], room_type: str) -> bool:
    wanted = room_type.casefold()
    for concept in resource.get("type") or []:
        if not isinstance(concept, Mapping):
            continue
        names = [concept.get("text")] + [c.get("display") for c in concept.get("coding") or []
                                          if isinstance(c, Mapping)]
        if any(isinstance(n, str) and n.casefold() == wanted for n in names):
            return True
    return False


def room_link_ops(appointment: Mapping[str, Any], links: Mapping[str, str], *,
                  start: str | None, end: str | None) -> list[dict[str, Any]]:
    """JSON Patch writing ``links`` (room type → URL) into the contained rooms, found by
    type. Raises ``ValueError`` when a room is missing or a URL is too long."""
    contained = appointment.get("contained") or []
    ops: list[dict[str, Any]] = []
    for room_type, url in links.items():
        if len(url) > MAX_URL:
            raise ValueError(f"the {room_type} link is longer than {MAX_URL} characters")
        index = next((i for i, r in enumerate(contained) if isinstance(r, Mapping)
                      and r.get("resourceType") == "HealthcareService"
                      and _is_room(r, room_type)), None)
        if index is None:
            raise ValueError(f"the Appointment has no contained {room_type}")
        room = contained[index]
        telecom: dict[str, Any] = {"system": "url", "value": url}
        period = {k: v for k, v in (("start", start), ("end", end)) if v}
        if period:
            telecom["period"] = period
        if room.get("id"):
            ops.append({"op": "test", "path": f"/contained/{index}/id", "value": room["id"]})
        if room.get("telecom"):
            ops.append({"op": "replace", "path": f"/contained/{index}/telecom/0",
                        "value": telecom})
        else:
            ops.append({"op": "add", "path": f"/contained/{index}/telecom", "value": [telecom]})
    return ops


class OracleAdapter(GenericAdapter):
    """Appointment status by allowed transitions; room links; FHIR writes as generic."""

    name = "oracle"

    async def write(self, write: a.Write, target: a.WriteTarget) -> str | None:
        if write.what == a.APPOINTMENT_STATUS:
            return await self.transition(write, target)
        if write.what == a.VIDEO_LINK:
            return await self.room_links(write, target)
        return await super().write(write, target)

    async def _patch(self, rid: str, ops: list[dict[str, Any]], version: str | None,
                     target: a.WriteTarget) -> fhir.FhirAnswer:
        try:
            return await target.fhir.send(fhir.patch("Appointment", rid, ops, version=version))
        except FhirWriteError as exc:
            if exc.http_status in (423, 424):  # locked / failed dependency: later
                raise FhirWriteError(exc.message, outcome="retry", http_status=exc.http_status,
                                     ehr_message=exc.ehr_message,
                                     retry_after=exc.retry_after) from None
            raise

    async def transition(self, write: a.Write, target: a.WriteTarget) -> str | None:
        facts = facts_of(write.payload)
        goal = APPOINTMENT_STATUS_FOR[write.event_kind]
        for _ in range(CONFLICT_ROUNDS):
            current = await self.resolve("Appointment", facts.appointment_id, target)
            rid, version = str(current.resource["id"]), current.version
            now = str(current.resource.get("status") or "")
            steps = status_path(now, goal)
            if steps is None:
                raise FhirWriteError(
                    f"Oracle Health allows no change of this Appointment from {now or 'no'} "
                    f"status to {goal}.", outcome="permanent", http_status=None)
            try:
                for step in steps:
                    answer = await self._patch(
                        rid, [{"op": "replace", "path": "/status", "value": step}], version,
                        target)
                    version = answer.version or fhir.etag_version(answer.etag)
            except FhirWriteError as exc:
                if exc.outcome == "conflict":
                    continue  # 409/412: read again, recompute the path
                raise
            return f"Appointment/{rid}"
        raise FhirWriteError("The Appointment kept changing while OpenVisit updated its "
                             "status; it will try again.", outcome="retry", http_status=412)

    async def room_links(self, write: a.Write, target: a.WriteTarget) -> str | None:
        p = write.payload
        links = {room: str(url) for room, url in (p.get("links") or {}).items()}
        facts = facts_of(p)
        for _ in range(CONFLICT_ROUNDS):
            current = await self.resolve("Appointment", facts.appointment_id, target)
            rid = str(current.resource["id"])
            try:
                ops = room_link_ops(current.resource, links, start=p.get("start"),
                                    end=p.get("end"))
            except ValueError as exc:
                raise FhirWriteError(f"Oracle video link not written: {exc} (is the licensed "
                                     "video-visit feature on for this appointment type?).",
                                     outcome="permanent", http_status=None) from None
            try:
                await self._patch(rid, ops, current.version, target)
            except FhirWriteError as exc:
                if exc.outcome == "conflict":
                    continue
                raise
            return f"Appointment/{rid}"
        raise FhirWriteError("The Appointment kept changing while OpenVisit wrote its video "
                             "link; it will try again.", outcome="retry", http_status=412)
