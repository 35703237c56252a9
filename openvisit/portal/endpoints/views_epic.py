"""Portal pages of an Epic endpoint's encrypted context links: one key per link kind."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvisit.errors import NotFound, OpenVisitError
from openvisit.launch.epic_config import LEGACY_MODES, LEGACY_RISK, LINK_KINDS, EpicLinkConfig
from openvisit.models import EhrEndpoint
from openvisit.portal.endpoints import service as admin
from openvisit.portal.signin.sessions import Principal
from openvisit.portal.web import (
    PortalRoute,
    PrincipalDep,
    form_bool,
    form_text,
    remember_session,
    render,
    savepoint,
    see_other,
)
from openvisit.web.deps import CtxDep, SessionDep

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])

MODES = [("gcm", "gcm — AES-GCM, authenticated (recommended)"),
         *[(m.value, f"{m.value} — unauthenticated, legacy Epic builds only")
           for m in sorted(LEGACY_MODES, key=lambda m: m.value)]]
KEY_FORMATS = [("base64", "base64 — a 32-byte AES-256 key"),
               ("secret", "secret — a plain-text secret (AES-128, SHA-1 derived)")]


def _page(request: Request, principal: Principal, *, endpoint: EhrEndpoint, kind: str,
          values: dict[str, Any], error: OpenVisitError | None = None,
          status_code: int = 200) -> Response:
    config = EpicLinkConfig.of(endpoint.options)
    return render(request, "portal/endpoint_epic.html", {
        "endpoint": endpoint, "kind": kind, "values": values, "error": error,
        "summary": config.summary(), "modes": MODES, "key_formats": KEY_FORMATS,
        "risk": LEGACY_RISK,
    }, principal=principal, status_code=status_code)


async def _epic_endpoint(session: Any, principal: Principal, endpoint_id: uuid.UUID,
                         kind: str) -> EhrEndpoint:
    principal.require("org_admin", doing="set Epic link keys")
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    if endpoint.vendor != "epic" or kind not in LINK_KINDS:
        raise NotFound("This endpoint has no Epic encrypted links (its EHR is not Epic).")
    return endpoint


@router.get("/portal/endpoints/{endpoint_id}/epic-link/{kind}")
async def epic_link_form(request: Request, session: SessionDep, principal: PrincipalDep,
                         endpoint_id: uuid.UUID, kind: str) -> Response:
    endpoint = await _epic_endpoint(session, principal, endpoint_id, kind)
    config = EpicLinkConfig.of(endpoint.options)
    current = config.keys.get(kind)
    values = {"key_format": current.key_format if current else "base64",
              "mode": current.mode.value if current else "gcm", "param": config.param,
              "allow_legacy_modes": config.allow_legacy_modes}
    return _page(request, principal, endpoint=endpoint, kind=kind, values=values)


@router.post("/portal/endpoints/{endpoint_id}/epic-link/{kind}")
async def epic_link_save(request: Request, session: SessionDep, ctx: CtxDep,
                         principal: PrincipalDep, endpoint_id: uuid.UUID, kind: str) -> Response:
    endpoint = await _epic_endpoint(session, principal, endpoint_id, kind)
    form = await request.form()
    data = admin.EpicLinkInput(
        kind=kind, key=form_text(form, "key"), key_format=form_text(form, "key_format"),
        mode=form_text(form, "mode"), param=form_text(form, "param") or None,
        allow_legacy_modes=form_bool(form, "allow_legacy_modes"))
    try:
        async with savepoint(session):
            await admin.set_epic_link_key(session, app=ctx, principal=principal,
                                          endpoint=endpoint, data=data)
    except OpenVisitError as exc:
        await session.refresh(endpoint)
        # The key is never echoed back into the page.
        values = {"key_format": data.key_format, "mode": data.mode, "param": data.param or "",
                  "allow_legacy_modes": data.allow_legacy_modes}
        return _page(request, principal, endpoint=endpoint, kind=kind, values=values, error=exc,
                     status_code=exc.status_code)
    return see_other(f"/portal/endpoints/{endpoint.id}?notice=saved#epic-links")
