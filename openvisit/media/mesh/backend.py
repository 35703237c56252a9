"""The mesh backend: media flows browser to browser, signalled by :mod:`openvisit.signalling`.

There is no media server to call: the grant *is* the seat's admission in the signalling
roster, which relays offers only between admitted seats and drops a seat's links the
moment the roster shows it back in the lobby (:func:`openvisit.visits.roster.may_signal`).
So every call below has nothing to do, and the lobby enqueues no job for it.
"""

from __future__ import annotations

import uuid

from openvisit.media.backend import JoinInfo, Seat


class MeshBackend:
    """Peer to peer through OpenVisit's signalling socket."""

    name = "mesh"
    calls_out = False

    async def open_room(self, visit_id: uuid.UUID) -> None:
        return None

    async def grant(self, seat: Seat) -> None:
        return None

    async def revoke(self, seat: Seat) -> None:
        return None

    async def close_room(self, visit_id: uuid.UUID) -> None:
        return None

    def join_info(self, seat: Seat) -> JoinInfo:
        return JoinInfo(backend=self.name)

    async def check(self) -> str:
        return "ok"

    async def aclose(self) -> None:
        return None


def mesh_backend(_app: object) -> MeshBackend:
    return MeshBackend()
