"""Who may see whom: the per-viewer roster the server sends (pure, no I/O).

This is where the lobby is enforced for presence: a participant who is not admitted sees
only its own state, never another participant's existence or role. Admitted participants
see the role labels of the other admitted ones. Staff (providers) see every seat with its
lobby state, connection and the time it started waiting.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from openvisit.models.visit import Participant, Visit

STAFF_ROLES = frozenset({"provider"})
#: Lobby states a seat can be in that let it take part in the call.
IN_CALL = "admitted"


@dataclass(frozen=True)
class Seat:
    """The public, PHI-free facts about one seat, as cached by every web process."""

    id: str
    role: str
    seat_no: int
    label: str
    state: str
    connected: bool
    waiting_since: str | None
    session: str | None
    connection_id: str | None
    rev: int
    #: A family member or caregiver the patient invited (the clinician's roster says so).
    by_patient: bool = False

    @classmethod
    def of(cls, participant: Participant) -> Seat:
        conn = participant.connection_id
        return cls(
            id=str(participant.id),
            role=participant.role,
            seat_no=participant.seat_no,
            label=participant.label,
            state=participant.lobby_state,
            connected=participant.connected,
            waiting_since=_iso(participant.waiting_since),
            session=conn.split(".", 1)[0] if conn else None,
            connection_id=conn,
            rev=participant.rev,
            by_patient=participant.invited_by == "patient",
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Seat:
        return cls(
            id=str(data["id"]), role=str(data["role"]), seat_no=int(data["seat_no"]),
            label=str(data.get("label", "")), state=str(data["state"]),
            connected=bool(data["connected"]), waiting_since=data.get("waiting_since"),
            session=data.get("session"), connection_id=data.get("connection_id"),
            rev=int(data["rev"]), by_patient=bool(data.get("by_patient", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "role": self.role, "seat_no": self.seat_no, "label": self.label,
            "state": self.state, "connected": self.connected,
            "waiting_since": self.waiting_since, "session": self.session,
            "connection_id": self.connection_id, "rev": self.rev,
            "by_patient": self.by_patient,
        }

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def admitted(self) -> bool:
        return self.state == IN_CALL


@dataclass(frozen=True)
class VisitFacts:
    id: str
    status: str
    provider_label_mode: str = "role"
    #: The organisation keeps the chat (encrypted); never sent to a page.
    store_chat: bool = False

    @classmethod
    def of(cls, visit: Visit, *, provider_label_mode: str = "role",
           store_chat: bool = False) -> VisitFacts:
        return cls(id=str(visit.id), status=visit.status,
                   provider_label_mode=provider_label_mode, store_chat=store_chat)

    def with_status(self, status: str) -> VisitFacts:
        return replace(self, status=status)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _self_view(seat: Seat) -> dict[str, Any]:
    view = {"id": seat.id, "role": seat.role, "n": seat.seat_no, "state": seat.state}
    if seat.state == "waiting":
        view["waiting_since"] = seat.waiting_since  # the lobby page shows how long
    return view


def _peer_view(seat: Seat, *, viewer: Seat, visit: VisitFacts) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": seat.id, "role": seat.role, "n": seat.seat_no,
        "connected": seat.connected, "session": seat.session,
    }
    # Patients and guests see a clinician as "Your clinician" (translated by the page)
    # unless the organisation chose to show the configured label.
    if seat.is_staff and (viewer.is_staff or visit.provider_label_mode == "display"):
        view["label"] = seat.label
    return view


def view_for(viewer: Seat, seats: dict[str, Seat], visit: VisitFacts) -> dict[str, Any]:
    """The ``state`` message body for ``viewer``: only what its role and lobby state allow."""
    body: dict[str, Any] = {
        "you": _self_view(viewer),
        "visit": {"status": visit.status},
        "peers": [],
    }
    if visit.status == "ended" or not (viewer.admitted or viewer.is_staff):
        return body
    body["peers"] = [
        _peer_view(seat, viewer=viewer, visit=visit)
        for seat in _ordered(seats)
        if seat.id != viewer.id and seat.admitted and seat.connected
    ]
    if viewer.is_staff:
        body["roster"] = [
            {
                "id": seat.id, "role": seat.role, "n": seat.seat_no, "label": seat.label,
                "state": seat.state, "connected": seat.connected,
                "waiting_since": seat.waiting_since, "you": seat.id == viewer.id,
                "by_patient": seat.by_patient,
            }
            for seat in _ordered(seats)
        ]
    return body


def _ordered(seats: dict[str, Seat]) -> list[Seat]:
    order = {"provider": 0, "patient": 1, "interpreter": 2, "guest": 3}
    return sorted(seats.values(), key=lambda s: (order.get(s.role, 9), s.seat_no, s.id))


def may_signal(sender: Seat | None, target: Seat | None) -> bool:
    """Peer signalling is allowed only between two admitted seats of the same visit."""
    return (
        sender is not None and target is not None and sender.id != target.id
        and sender.admitted and target.admitted
    )


def may_chat(sender: Seat | None, target: Seat | None) -> bool:
    """Chat goes between the seats in the call, like peer signalling."""
    return may_signal(sender, target)


def may_message_lobby(sender: Seat | None, target: Seat | None) -> bool:
    """A lobby message goes from a clinician to a seat waiting in the lobby of its visit."""
    return (sender is not None and target is not None and sender.is_staff
            and not target.is_staff and target.state == "waiting")


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
