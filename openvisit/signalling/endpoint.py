"""The signalling WebSocket route: ``/ws/visit`` (the join token travels in ``hello``).

The token is never in the URL, so proxies and access logs cannot record it.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from openvisit.context import AppContext
from openvisit.signalling.connection import Connection
from openvisit.signalling.rooms import Rooms

router = APIRouter()


def rooms_of(websocket: WebSocket) -> Rooms:
    """This process's rooms, made on first use (one per application)."""
    state = websocket.app.state
    rooms: Rooms | None = getattr(state, "visit_rooms", None)
    if rooms is None:
        ctx: AppContext = state.ctx
        rooms = Rooms(ctx)
        state.visit_rooms = rooms
    return rooms


@router.websocket("/ws/visit")
async def visit_socket(websocket: WebSocket) -> None:
    """One participant's signalling socket; see :mod:`openvisit.signalling.connection`."""
    await websocket.accept()
    connection = Connection(websocket, ctx=websocket.app.state.ctx, rooms=rooms_of(websocket))
    await connection.serve()
