"""``create_app()``: routers, middleware, error handlers and the lifespan of one process.

The same application runs in three roles: ``web`` (always), plus ``worker`` and ``mllp`` when
``openvisit serve`` runs everything in one process (the embedded default).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from openvisit import __version__
from openvisit.config import Settings, load_settings
from openvisit.context import AppContext
from openvisit.devicetest import views as devicetest_views
from openvisit.errors import ConfigurationError, OpenVisitError
from openvisit.feed import http as feed_http
from openvisit.feed.listener import serve_mllp
from openvisit.jobs.worker import Worker
from openvisit.launch import views as launch_views
from openvisit.launch.keys import ensure_keys
from openvisit.logs import configure_logging, get_logger
from openvisit.media.livekit import hooks as livekit_hooks
from openvisit.notify import views as notify_views
from openvisit.notify.twilio import hooks as twilio_hooks
from openvisit.ops import endpoints as ops_endpoints
from openvisit.portal import routes as portal_routes
from openvisit.reports import api as reports_api
from openvisit.reports import views as reports_views
from openvisit.signalling import endpoint as signalling_endpoint
from openvisit.visits import endpoints as visits_endpoints
from openvisit.visits import views as visits_views
from openvisit.visits import views_queue as visits_queue
from openvisit.web import errors
from openvisit.web.apidocs import install_api_docs
from openvisit.web.middleware import MetricsMiddleware
from openvisit.web.security import HeaderPolicy
from openvisit.web.templating import STATIC_DIR, templates

log = get_logger(__name__)


class RoleRunner(Protocol):
    """A background role: runs until ``stop`` is set; sets ``started`` once it serves."""

    def __call__(
        self, ctx: AppContext, stop: asyncio.Event, /, *, started: asyncio.Event | None = None
    ) -> Coroutine[Any, Any, None]: ...


#: How long a role may take to start (bind its port) before start-up is given up.
ROLE_START_SECONDS = 60.0


async def run_worker(
    ctx: AppContext, stop: asyncio.Event, *, started: asyncio.Event | None = None
) -> None:
    if started is not None:
        started.set()
    await Worker(ctx).run(stop)


async def run_mllp(
    ctx: AppContext, stop: asyncio.Event, *, started: asyncio.Event | None = None
) -> None:
    await serve_mllp(ctx, stop=stop, started=started)


async def _until_started(role: str, task: asyncio.Task[None], started: asyncio.Event) -> None:
    """Wait until ``role`` has started; raise :class:`ConfigurationError` if it failed or
    ended first, so the process never says ready without it (issue 11, item 9)."""
    waiter = asyncio.ensure_future(started.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=ROLE_START_SECONDS,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if started.is_set() and not task.done():
        return
    if task.done() and not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        reason = exc.message if isinstance(exc, OpenVisitError) else type(exc).__name__
        log.error("role_start_failed", role=role, reason=reason)
        raise ConfigurationError(reason) from exc
    if not task.done():
        task.cancel()
    reason = f"the {role} role did not start within {ROLE_START_SECONDS:.0f} s"
    log.error("role_start_failed", role=role, reason=reason)
    raise ConfigurationError(reason)


ROLE_RUNNERS: dict[str, RoleRunner] = {"worker": run_worker, "mllp": run_mllp}

#: Every router of the product, included in this order. A domain package adds its line here.
ROUTERS: tuple[APIRouter, ...] = (
    ops_endpoints.router,
    visits_views.router,
    visits_queue.router,
    visits_endpoints.router,
    signalling_endpoint.router,
    launch_views.router,
    feed_http.router,
    notify_views.router,
    twilio_hooks.router,
    livekit_hooks.router,
    portal_routes.router,
    devicetest_views.router,
    reports_views.router,
    reports_api.router,
)


async def run_startup_hooks(ctx: AppContext) -> None:
    """What must be in place before the first request (called once the bus is up)."""
    await ensure_keys(ctx)


def create_app(
    settings: Settings | None = None,
    *,
    ctx: AppContext | None = None,
    roles: Iterable[str] = (),
) -> FastAPI:
    """Build the ASGI app; ``roles`` adds background roles to this process."""
    settings = settings or (ctx.settings if ctx else load_settings())
    configure_logging(level=settings.log_level, json=settings.log_json)
    context = ctx or AppContext.create(settings)
    background = list(roles)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await context.start()
        await run_startup_hooks(context)
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            for role in background:
                started = asyncio.Event()
                task = asyncio.create_task(
                    ROLE_RUNNERS[role](context, stop, started=started), name=f"role-{role}"
                )
                tasks.append(task)
                await _until_started(role, task, started)
        except BaseException:
            # Not ready without every role: stop what started and fail start-up.
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if ctx is None:
                await context.close()
            raise
        log.info("openvisit_started", roles=["web", *background], version=__version__)
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                try:
                    await asyncio.wait_for(task, timeout=15)
                except (TimeoutError, asyncio.CancelledError):
                    task.cancel()
                except Exception:
                    log.exception("role_failed_on_stop", role=task.get_name())
            if ctx is None:
                await context.close()

    docs = settings.exposes(settings.expose_api_docs)
    app = FastAPI(
        title="OpenVisit",
        version=__version__,
        lifespan=lifespan,
        # Our own docs page (vendored Swagger UI, no CDN); the schema only where exposed.
        docs_url=None,
        openapi_url="/api/openapi.json" if docs else None,
        redoc_url=None,
    )
    app.state.ctx = context
    app.state.settings = settings
    app.add_middleware(
        MetricsMiddleware,
        policy=HeaderPolicy.from_settings(settings),
        strict=settings.environment != "production",
    )
    errors.install(app)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    if docs:
        install_api_docs(app)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> RedirectResponse:
        # Browsers ask for /favicon.ico whatever a page links (and for JSON or a PDF); the
        # icon is one SVG, linked from base.html.
        return RedirectResponse("/static/img/favicon.svg", status_code=308,
                                headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request) -> HTMLResponse:
        facts = settings.exposes(settings.expose_version)
        links = [("API documentation", "/api/docs")] if docs else []
        return templates.TemplateResponse(
            request,
            "index.html",
            {
                "links": [*links, ("Readiness", "/readyz")],
                "version": __version__ if facts else None,
                "database": context.db.engine.dialect.name if facts else None,
                "bus": type(context.bus).__name__ if facts else None,
            },
        )

    return app
