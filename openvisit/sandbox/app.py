"""Build and run the sandbox EHR: SMART authorisation server + FHIR R4 store + EHR pages.

``create_sandbox_app`` returns a Starlette ASGI app; ``run`` serves one with uvicorn. The
FHIR base is ``{base_url}/fhir``. ``state_path`` is a directory holding ``fhir.json`` (the
store), ``server-key.pem`` (the id_token signing key) and ``clients.json`` (registrations made
through ``POST /admin/clients``); without it everything lives in memory and the key is new on
every start. The synthetic seed is rebuilt for the current local day on start and again when
the day changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from openvisit.sandbox import admin, authorize, chart, fhir_api, pages, tokens
from openvisit.sandbox import demo as demo_pages
from openvisit.sandbox.client_auth import CachedJwks, JwksFetcher
from openvisit.sandbox.clients import ClientRegistry, SandboxClient, load_clients_file
from openvisit.sandbox.errors import FhirError
from openvisit.sandbox.fhir_store import ResourceStore
from openvisit.sandbox.grants import GrantStore
from openvisit.sandbox.keys import ServerKey
from openvisit.sandbox.runtime import DemoMode, Lifetimes, Sandbox, SandboxUrls, ensure_seeded

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent


def _local_now() -> datetime:
    return datetime.now().astimezone()


class _DailySeed:
    """Plain ASGI middleware: re-seed before a request when the local day has changed."""

    def __init__(self, app: ASGIApp, *, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            with self._lock:
                ensure_seeded(self.sandbox)
        await self.app(scope, receive, send)


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return fhir_api.fhir_response(exc.outcome(), status_code=exc.status_code, headers=exc.headers)


def create_sandbox_app(
    *,
    base_url: str,
    state_path: Path | None = None,
    clients: Sequence[SandboxClient] | None = None,
    provider_launch_url: str,
    patient_launch_url: str,
    now: Callable[[], datetime] | None = None,
    admin_token: str | None = None,
    jwks_fetcher: JwksFetcher | None = None,
    lifetimes: Lifetimes | None = None,
    demo: DemoMode | None = None,
) -> Starlette:
    """The sandbox EHR as an ASGI app.

    ``base_url`` is where it is reachable (no trailing slash needed); ``now`` must return an
    aware datetime in the sandbox's local zone (default: the machine's). ``clients`` are
    registered in addition to those persisted under ``state_path``. ``admin_token`` guards
    ``/admin/clients`` (loopback only when None). ``jwks_fetcher`` replaces the HTTP fetch of
    client ``jwks_uri`` documents (tests). ``demo`` turns on demo mode
    (:mod:`openvisit.sandbox.demo`): a fresh round of appointments now and on "Reset demo",
    any appointment startable at any time, the "Send booking (SIU)" button. Raises
    :class:`openvisit.errors.InvalidInput` for bad registrations.
    """
    clock = now or _local_now
    if clock().tzinfo is None:
        raise ValueError("now() must return an aware datetime")
    urls = SandboxUrls(
        base_url=base_url.rstrip("/"),
        provider_launch_url=provider_launch_url,
        patient_launch_url=patient_launch_url,
    )
    sandbox = Sandbox(
        urls=urls,
        store=ResourceStore(path=state_path / "fhir.json" if state_path else None, now=clock),
        clients=ClientRegistry(
            clients or (), persist_path=state_path / "clients.json" if state_path else None
        ),
        grants=GrantStore(),
        key=ServerKey.load_or_create(state_path / "server-key.pem" if state_path else None),
        now=clock,
        templates=Jinja2Templates(directory=str(_HERE / "templates")),
        jwks_fetcher=jwks_fetcher or CachedJwks(),
        admin_token=admin_token,
        lifetimes=lifetimes or Lifetimes(),
        demo=demo,
    )
    ensure_seeded(sandbox, force=demo is not None)
    app = Starlette(
        routes=[
            *pages.routes(),
            *chart.routes(),
            *authorize.routes(),
            *tokens.routes(),
            *fhir_api.routes(),
            *admin.routes(),
            *demo_pages.routes(),
            Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
        ],
        middleware=[
            Middleware(_DailySeed, sandbox=sandbox),
            # Browser-based SMART apps call the token endpoint and FHIR API cross-origin;
            # bearer tokens, not cookies, so no credentials.
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "If-Match", "Prefer"],
                expose_headers=["Location", "ETag", "Last-Modified"],
            ),
        ],
        exception_handlers={FhirError: _fhir_error},
    )
    app.state.sandbox = sandbox
    log.info("sandbox.ready fhir_base=%s clients=%d", urls.fhir_base, len(sandbox.clients.all()))
    return app


def run(
    *,
    host: str,
    port: int,
    provider_launch_url: str,
    patient_launch_url: str,
    base_url: str | None = None,
    state_path: Path | None = None,
    clients_file: Path | None = None,
    admin_token: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve the sandbox with uvicorn until interrupted.

    ``base_url`` defaults to ``http://{host}:{port}``; ``clients_file`` is a JSON list of
    registrations (see :func:`openvisit.sandbox.clients.load_clients_file`).
    """
    clients = load_clients_file(clients_file) if clients_file is not None else []
    app = create_sandbox_app(
        base_url=base_url or f"http://{host}:{port}",
        state_path=state_path,
        clients=clients,
        provider_launch_url=provider_launch_url,
        patient_launch_url=patient_launch_url,
        admin_token=admin_token,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False)


__all__ = ["create_sandbox_app", "ensure_seeded", "run"]
