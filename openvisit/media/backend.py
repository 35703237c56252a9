"""The media-backend interface: one per way of carrying a visit's media.

The lobby stays the server's (DESIGN §2.3): a backend only ever grants media to a seat the
lobby has admitted, and takes the grant back the moment the seat is sent back to the lobby,
removed, or the visit ends. What a seat needs to join is a :class:`JoinInfo`: where its
browser connects and, for backends whose server the browser talks to itself (LiveKit), a
short-lived grant bound to its participant id. Backends OpenVisit drives on the browser's
behalf (mesh, Janus) give the browser no credential at all.

Every method that calls out is idempotent: the lobby runs them as jobs
(:mod:`openvisit.media.tasks`), which may run twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Seat:
    """What a backend knows of a seat: ids and role, never a name."""

    visit_id: uuid.UUID
    participant_id: uuid.UUID
    role: str
    #: Bumped when the seat's links are revoked (removed): a grant names the version.
    token_version: int = 0


@dataclass(frozen=True)
class JoinInfo:
    """What an admitted seat's page needs to reach the media: sent on its own socket only."""

    backend: str
    #: Where the browser connects for media ("" = OpenVisit's own signalling socket).
    url: str = ""
    #: A short-lived credential for ``url`` bound to the participant id, or None when
    #: OpenVisit holds the credentials itself.
    token: str | None = None
    expires_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "url": self.url, "token": self.token,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None}


class MediaBackend(Protocol):
    """One way of carrying media; see the module docstring for the rules."""

    #: The name in :data:`openvisit.media.backends.BACKENDS` and ``visit.media_backend``.
    name: str
    #: True when grants and revocations call out to a media server (run as jobs); False when
    #: the signalling roster alone decides (the mesh).
    calls_out: bool

    async def open_room(self, visit_id: uuid.UUID) -> None:
        """Make sure the visit's room exists (idempotent)."""

    async def grant(self, seat: Seat) -> None:
        """Let an admitted seat publish and subscribe (idempotent)."""

    async def revoke(self, seat: Seat) -> None:
        """Take the seat's media away at once: no new join, and a present one is kicked."""

    async def close_room(self, visit_id: uuid.UUID) -> None:
        """The visit ended: destroy the room, disconnecting everyone (idempotent)."""

    def join_info(self, seat: Seat) -> JoinInfo:
        """What this admitted seat's page needs to join the media (no I/O)."""

    async def check(self) -> str:
        """"ok", or why the media server cannot be used now (for ``/readyz``)."""

    async def aclose(self) -> None:
        """Close the clients this backend holds (the process is stopping)."""
