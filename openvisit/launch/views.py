"""Launch routes: EHR and standalone launch, the redirect URI, the one-time IdP sign-in,
Epic's encrypted link, and OpenVisit's JWKS."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from openvisit import i18n, nonces
from openvisit.ehr_endpoints import service as endpoints_service
from openvisit.errors import NotAuthenticated, OpenVisitError
from openvisit.idp.client import IdpClient, idp_client
from openvisit.launch import epic, identity, messages, proof, service
from openvisit.launch.keys import public_jwks
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.security import needs_of, origin_of, page_needs
from openvisit.web.templating import templates

router = APIRouter(tags=["launch"])


async def frameable(request: Request, ctx: CtxDep) -> None:
    """Launch pages (and their error pages) open inside EHR frames (Oracle PowerChart, Epic
    Hyperspace): let the organisations' EHR origins frame them (CSP frame-ancestors)."""
    async with ctx.db.read() as session:
        origins = await endpoints_service.launch_frame_ancestors(session)
    page_needs(request, frame_ancestors=origins)


Frameable = [Depends(frameable)]


def _go(request: Request, target: service.Redirect | str) -> Response:
    if isinstance(target, str):
        return RedirectResponse(target, status_code=303)
    if target.form is None:
        return RedirectResponse(target.url, status_code=303)
    # authorize-post: a self-submitting form (with a button for browsers without JS); the
    # page may post to the EHR's authorization endpoint and nowhere else.
    page_needs(request, frame_ancestors=needs_of(request.scope).frame_ancestors,
               form_targets=[origin_of(target.url)])
    return templates.TemplateResponse(
        request, "launch/post.html", {"action": target.url, "fields": target.form}
    )


def _language(request: Request, kind: str) -> str:
    """The page language of a launch: a patient's from ``?lang=`` or the browser; a
    clinician's English (the launch's set-up messages are written in English)."""
    language = (i18n.negotiate(request.query_params.get("lang"),
                               accept_language=request.headers.get("accept-language"))
                if kind == "patient" else i18n.DEFAULT_LANGUAGE)
    i18n.activate(language)
    return language


@router.get("/launch", include_in_schema=False, dependencies=Frameable)
async def ehr_launch(request: Request, ctx: CtxDep, iss: str = "", launch: str = "") -> Response:
    """SMART EHR launch of a provider (the EHR's "Start virtual visit")."""
    _language(request, "provider")
    return _go(request, await service.begin(app=ctx, kind="provider", iss=iss, launch=launch))


@router.get("/launch/patient", include_in_schema=False, dependencies=Frameable)
async def patient_launch(
    request: Request, ctx: CtxDep, iss: str = "", launch: str = ""
) -> Response:
    """SMART launch from the patient portal ("Begin visit")."""
    language = _language(request, "patient")
    return _go(request, await service.begin(app=ctx, kind="patient", iss=iss, launch=launch,
                                            language=language))


@router.get("/launch/standalone/{endpoint_id}", include_in_schema=False, dependencies=Frameable)
async def standalone_launch(
    request: Request,
    ctx: CtxDep,
    endpoint_id: uuid.UUID,
    kind: Literal["provider", "patient"] = "provider",
    appointment: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """SMART standalone launch against a configured endpoint; ``appointment`` names the
    appointment when the EHR's sign-in gives no context (the EHR's context wins)."""
    language = _language(request, kind)
    return _go(
        request,
        await service.begin(app=ctx, kind=kind, endpoint_id=endpoint_id,
                            appointment_hint=appointment, language=language),
    )


@router.get("/launch/callback", include_in_schema=False, dependencies=Frameable)
async def callback(
    request: Request,
    ctx: CtxDep,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> Response:
    """The SMART redirect URI.

    Holds no database session itself: :func:`service.complete` reads, calls the EHR with no
    transaction open, then writes in a short transaction committed before this answers.
    ``Server-Timing`` reports how long the EHR took (``ehr``) and how many calls it needed,
    so operators can tell OpenVisit's own time from the EHR's.
    """
    started = time.perf_counter()
    # Until the state says whose launch this is, a page is in the browser's language.
    i18n.activate(i18n.negotiate(accept_language=request.headers.get("accept-language")))
    try:
        outcome = await service.complete(
            app=ctx, state=state, code=code, error=error, error_description=error_description
        )
    except OpenVisitError as exc:
        if messages.is_state_error(exc):
            messages.restart(exc)
        raise
    response = _go(request, outcome.redirect)
    if outcome.patient is not None:
        identity.set_cookie(response, app=ctx, visit_id=outcome.visit_id,
                            identity=outcome.patient, request=request)
    total_ms = (time.perf_counter() - started) * 1000
    response.headers["Server-Timing"] = (
        f'ehr;dur={outcome.ehr_seconds * 1000:.1f};desc="{outcome.ehr_round_trips} calls", '
        f"app;dur={total_ms - outcome.ehr_seconds * 1000:.1f}"
    )
    return response


def _idp(ctx: CtxDep) -> IdpClient:
    return idp_client(ctx)


@router.get("/launch/idp", include_in_schema=False, dependencies=Frameable)
async def idp_start(request: Request, ctx: CtxDep, pending: str) -> Response:
    """First launch of a clinician: sign in once with the organisation's IdP.

    Read → call out → write: the pending launch is checked in a read-only session, the IdP's
    discovery is fetched with no transaction open, then the pending value is taken (once:
    two concurrent uses yield one winner) and the IdP ``state`` stored in one short
    transaction.
    """
    async with ctx.db.read() as session:
        await nonces.check(session, scope="provider_pending", value=pending)
    start = await _idp(ctx).start(
        ctx.http, redirect_uri=f"{ctx.settings.public_url}/launch/idp/callback"
    )
    async with ctx.transaction() as session:
        data = await nonces.take(session, scope="provider_pending", value=pending)
        await nonces.put(
            session,
            scope="idp_state",
            value=start.state,
            ttl=service.STATE_TTL,
            data={**data, "nonce": start.nonce, "verifier": start.code_verifier},
        )
    return RedirectResponse(start.url, status_code=303)


@router.get("/launch/idp/callback", include_in_schema=False, dependencies=Frameable)
async def idp_callback(
    request: Request,
    session: SessionDep,
    ctx: CtxDep,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
) -> Response:
    """The IdP's redirect URI: check (or make) the EHR user ↔ IdP subject link, then enter.

    An Epic-link launch also leaves the provider proof cookie (:mod:`openvisit.launch.proof`).
    """
    # Spent in its own transaction: an error= answer must not leave the state reusable.
    data = await nonces.spend(ctx.db, scope="idp_state", value=state)
    if error or not code:
        raise NotAuthenticated(
            f"The organisation's sign-in was not completed ({error or 'no code'}). Launch the "
            "visit again from the EHR to retry.",
            title="Sign-in not completed",
        )
    idp = _idp(ctx)
    claims = await idp.finish(
        ctx.http,
        code=code,
        redirect_uri=f"{ctx.settings.public_url}/launch/idp/callback",
        code_verifier=data["verifier"],
        nonce=data["nonce"],
    )
    signed_in = await proof.link_provider(
        session, app=ctx, pending=data, idp_issuer=idp.issuer, idp_subject=claims.subject
    )
    response = RedirectResponse(signed_in.url, status_code=303)
    if signed_in.proof is not None:
        proof.set_cookie(response, settings=ctx.settings, value=signed_in.proof)
    return response


@router.get("/launch/epic/{endpoint_id}/{kind}", include_in_schema=False, dependencies=Frameable)
async def epic_link(
    request: Request,
    session: SessionDep,
    ctx: CtxDep,
    endpoint_id: uuid.UUID,
    kind: Literal["provider", "patient"],
) -> Response:
    """Epic's legacy encrypted context link (one encrypted query parameter).

    The path's ``kind`` only picks the key: a link of the other kind does not decrypt. A
    patient's errors are worded for the patient, in the browser's language.
    """
    from openvisit.ehr_endpoints.service import get_endpoint
    from openvisit.errors import InvalidInput
    from openvisit.launch.epic_config import EpicLinkConfig

    _language(request, kind)
    try:
        endpoint = await get_endpoint(session, endpoint_id)
        param = EpicLinkConfig.of(endpoint.options).param
        token = request.query_params.get(param)
        if not token:
            raise InvalidInput(f"The link has no encrypted {param!r} parameter.")
        outcome = await epic.launch_from_link(
            session, app=ctx, endpoint_id=endpoint_id, kind=kind, token=token,
            proof_cookie=proof.from_request(request, ctx.settings) if kind == "provider" else None,
        )
    except OpenVisitError as exc:
        if kind == "patient":
            messages.for_patient(exc)  # the page is worded for the patient
        raise
    return _go(request, outcome.redirect)


@router.get("/.well-known/jwks.json", tags=["launch"])
async def jwks(ctx: CtxDep) -> JSONResponse:
    """OpenVisit's public signing keys, for EHRs verifying its ``private_key_jwt`` assertions."""
    return JSONResponse(await public_jwks(ctx), headers={"Cache-Control": "public, max-age=300"})


__all__ = ["HTMLResponse", "router"]
