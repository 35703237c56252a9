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


def gate_of(ctx: AppContext) -> HelloGate:
    """This process's count of sockets that have not said hello (made on first use)."""
    gate = ctx.services.hello_gate
    if gate is None:
        settings = ctx.settings
        gate = ctx.services.hello_gate = HelloGate(
            per_address=settings.ws_unauthenticated_per_address,
            total=settings.ws_unauthenticated_total)
    return gate


def rooms_of(ctx: AppContext) -> Rooms:
    """This process's rooms (made on first use)."""
    rooms = ctx.services.visit_rooms
    if rooms is None:
        rooms = ctx.services.visit_rooms = Rooms(ctx)
    return rooms


@router.websocket("/ws/visit")
async def visit_socket(websocket: WebSocket) -> None:
    """One participant's signalling socket; see :mod:`openvisit.signalling.connection`."""
    await websocket.accept()
    ctx: AppContext = websocket.app.state.ctx
    connection = Connection(websocket, ctx=ctx, rooms=rooms_of(ctx), gate=gate_of(ctx))
    await connection.serve()
