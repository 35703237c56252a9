"""The signalling WebSocket route: ``/ws/visit`` (the join token travels in ``hello``).

The token is never in the URL, so proxies and access logs cannot record it.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from openvisit.context import AppContext
from openvisit.signalling.connection import Connection
from openvisit.signalling.limits import HelloGate
from openvisit.signalling.rooms import Rooms

router = APIRouter()


def gate_of(websocket: WebSocket) -> HelloGate:
    """This process's count of sockets that have not said hello (one per application)."""
    state = websocket.app.state
    gate: HelloGate | None = getattr(state, "visit_hello_gate", None)
    if gate is None:
        settings = state.ctx.settings
        gate = HelloGate(per_address=settings.ws_unauthenticated_per_address,
                         total=settings.ws_unauthenticated_total)
        state.visit_hello_gate = gate
    return gate


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
    connection = Connection(websocket, ctx=websocket.app.state.ctx, rooms=rooms_of(websocket),
                            gate=gate_of(websocket))
    await connection.serve()
