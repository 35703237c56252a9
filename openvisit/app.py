"""``create_app()``: routers, middleware, error handlers and the lifespan of one process.

The same application runs in three roles: ``web`` (always), plus ``worker`` and ``mllp`` when
``openvisit serve`` runs everything in one process (the embedded default).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from openvisit import __version__
from openvisit.config import Settings, load_settings
from openvisit.context import AppContext
from openvisit.errors import ConfigurationError, OpenVisitError
from openvisit.logs import configure_logging, get_logger
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
    from openvisit.jobs.worker import Worker

    if started is not None:
        started.set()
    await Worker(ctx).run(stop)


async def run_mllp(
    ctx: AppContext, stop: asyncio.Event, *, started: asyncio.Event | None = None
) -> None:
    from openvisit.feed.listener import serve_mllp

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

#: Modules with a module-level ``router`` (fastapi.APIRouter), included in this order.
#: Each domain package adds its own line here.
ROUTER_MODULES: tuple[str, ...] = (
    "openvisit.ops.endpoints",
    "openvisit.visits.views",
    "openvisit.visits.endpoints",
    "openvisit.signalling.endpoint",
    "openvisit.launch.views",
    "openvisit.feed.http",
    "openvisit.notify.views",
    "openvisit.notify.twilio.hooks",
    "openvisit.portal.routes",
    "openvisit.devicetest.views",
)


#: Start-up hooks ("module:function", called with the AppContext once the bus is up).
STARTUP_HOOKS: tuple[str, ...] = ("openvisit.launch.keys:ensure_keys",)


async def run_startup_hooks(ctx: AppContext) -> None:
    for spec in STARTUP_HOOKS:
        module_name, _, func_name = spec.partition(":")
        await getattr(importlib.import_module(module_name), func_name)(ctx)


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
    for module_name in ROUTER_MODULES:
        app.include_router(importlib.import_module(module_name).router)

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
