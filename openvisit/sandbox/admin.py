"""Client registration API: ``POST /admin/clients`` (JSON) and ``GET /admin/clients``.

This is how OpenVisit's demo registers itself with the sandbox (an EHR analyst's app-catalogue
step). Guarded by ``admin_token`` (``Authorization: Bearer <token>``) when one is configured;
without one only loopback callers are accepted, which suits a sandbox bound to 127.0.0.1.
Registrations made here persist in the state directory.
"""

from __future__ import annotations

import hmac
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from openvisit.errors import InvalidInput
from openvisit.sandbox.clients import SandboxClient
from openvisit.sandbox.runtime import get_sandbox

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _allowed(request: Request) -> bool:
    sandbox = get_sandbox(request)
    if sandbox.admin_token:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), sandbox.admin_token.encode()
        )
    return request.client is not None and request.client.host in _LOOPBACK


def _denied() -> Response:
    return JSONResponse({"error": "forbidden", "detail": "admin token required"}, status_code=403)


async def register_client(request: Request) -> Response:
    """Register or replace a client; 201 with the registration (secrets left out)."""
    if not _allowed(request):
        return _denied()
    try:
        data = json.loads(await request.body())
        if not isinstance(data, dict):
            raise InvalidInput("body must be a JSON object")
        client = SandboxClient.from_json(data)
    except ValueError as exc:
        return JSONResponse(
            {"error": "invalid_client_metadata", "detail": str(exc)}, status_code=400
        )
    except InvalidInput as exc:
        return JSONResponse(
            {"error": "invalid_client_metadata", "detail": exc.message}, status_code=400
        )
    get_sandbox(request).clients.register(client, persist=True)
    return JSONResponse(client.to_json(include_secret=False), status_code=201)


async def list_clients(request: Request) -> Response:
    if not _allowed(request):
        return _denied()
    clients = get_sandbox(request).clients.all()
    return JSONResponse({"clients": [c.to_json(include_secret=False) for c in clients]})


def routes() -> list[BaseRoute]:
    return [
        Route("/admin/clients", register_client, methods=["POST"]),
        Route("/admin/clients", list_clients, methods=["GET"]),
    ]
