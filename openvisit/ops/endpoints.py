"""``/healthz`` (alive), ``/readyz`` (database and bus reachable) and ``/metrics``."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from openvisit.errors import NotFound
from openvisit.jobs import service as jobs_service
from openvisit.logs import get_logger
from openvisit.media import service as media_service
from openvisit.models.ops import JOB_STATES
from openvisit.web.deps import CtxDep
from openvisit.writeback import service as writeback_service

log = get_logger(__name__)
router = APIRouter(tags=["operations"])

JOBS_BY_STATE = Gauge(
    "openvisit_job_queue", "Jobs in the queue by state (dead = needs a person)", ["state"]
)
WRITEBACK_FAILED = Gauge(
    "openvisit_writeback_failed",
    "EHR write-backs the EHR refused for good (shown in the portal, re-runnable)")
MEDIA = {
    name: Gauge(f"openvisit_media_{name}", text, ["backend"])
    for name, text in (
        ("rooms", "Active visits with someone in the call, by media backend"),
        ("publishers", "Seats in a call and connected (each publishes once), by backend"),
        ("subscriptions", "Streams received (each seat receives every other), by backend"),
    )
}
MEDIA_BACKENDS = ("mesh", "janus", "livekit")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving requests."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(ctx: CtxDep) -> Response:
    """200 when the database, the bus and the media backend of new visits answer within 3 s,
    else 503 naming what is down; ``media_backend`` names that backend."""
    checks: dict[str, str] = {}

    async def media() -> None:
        state = await media_service.readiness(ctx)
        if state != "ok":
            raise ConnectionError(state)

    for name, probe in (("database", ctx.db.ping), ("bus", ctx.bus.ping), ("media", media)):
        try:
            await asyncio.wait_for(probe(), timeout=3.0)
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready
            log.warning("readiness_check_failed", check=name, error_type=type(exc).__name__)
            checks[name] = (str(exc) if name == "media" and isinstance(exc, ConnectionError)
                            else f"unavailable ({type(exc).__name__})")
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks,
         "media_backend": ctx.settings.media_backend},
        status_code=200 if ok else 503,
    )


def _metrics_allowed(ctx: CtxDep, authorization: str) -> bool:
    """Public where exposed; otherwise only with ``Authorization: Bearer <metrics_token>``."""
    settings = ctx.settings
    if settings.exposes(settings.expose_metrics):
        return True
    token = settings.metrics_token
    scheme, _, given = authorization.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


@router.get("/metrics", responses={404: {"description": "Metrics are not exposed here"}})
async def metrics(ctx: CtxDep, authorization: Annotated[str, Header()] = "") -> Response:
    """Prometheus text exposition: this process's counters plus the job queue by state.

    Outside production it is public; in production it answers only Prometheus sending the
    ``OPENVISIT_METRICS_TOKEN`` as a bearer token (or everyone with
    ``OPENVISIT_EXPOSE_METRICS=true``), and 404 otherwise, so the page gives nothing away.
    """
    if not _metrics_allowed(ctx, authorization):
        raise NotFound("There is nothing at this address.")
    try:
        async with ctx.transaction() as session:
            counts = await jobs_service.counts_by_state(session)
            WRITEBACK_FAILED.set(await writeback_service.count_failed(session))
            usage = await media_service.usage(session)
        for state in JOB_STATES:
            JOBS_BY_STATE.labels(state).set(counts.get(state, 0))
        for backend in MEDIA_BACKENDS:
            for name, gauge in MEDIA.items():
                gauge.labels(backend).set(usage.get(backend, {}).get(name, 0))
    except Exception as exc:  # metrics must still answer when the database is down
        log.warning("metrics_job_counts_failed", error_type=type(exc).__name__)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
