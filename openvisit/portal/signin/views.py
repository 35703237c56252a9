"""Sign-in pages: the organisation's IdP (OpenID Connect, PKCE) and local accounts."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvisit import nonces
from openvisit.context import AppContext
from openvisit.errors import OpenVisitError
from openvisit.idp.client import IdpClient, idp_client
from openvisit.portal.signin import service as accounts
from openvisit.portal.signin import sessions
from openvisit.portal.signin.passwords import SigninBusy
from openvisit.portal.signin.throttle import TooManySignins
from openvisit.portal.web import (
    MaybePrincipalDep,
    PortalRoute,
    PrincipalDep,
    form_text,
    remember_session,
    render,
    see_other,
)
from openvisit.web.deps import CtxDep, SessionDep

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])
SIGNIN_COOKIE = "ov_signin"
IDP_STATE_TTL = timedelta(minutes=10)


#: Pages outside /portal that use the portal's sign-in.
_SIGNED_IN_PAGES = ("/ops/outbox",)


def safe_next(value: str | None) -> str:
    """Only portal paths (and the outbox) on this site: never an open redirect."""
    if value and not value.startswith("//") and "\\" not in value and (
            value.startswith("/portal")
            or any(value == p or value.startswith(p + "?") for p in _SIGNED_IN_PAGES)):
        return value
    return "/portal"


def _idp(ctx: AppContext) -> IdpClient:
    return idp_client(ctx)


def _secure(ctx: AppContext) -> bool:
    return ctx.settings.public_url.startswith("https://")


def _signin_page(request: Request, ctx: AppContext, *, next_url: str, error: str | None = None,
                 username: str = "", status_code: int = 200,
                 error_title: str | None = None) -> Response:
    token = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "portal/signin.html", {
        "next": next_url, "error": error, "error_title": error_title, "username": username,
        "signin_token": token,
        "idp_enabled": bool(ctx.settings.oidc_issuer),
    }, principal=None, status_code=status_code)
    response.set_cookie(SIGNIN_COOKIE, token, httponly=True, samesite="lax", path="/portal",
                        secure=_secure(ctx), max_age=3600)
    return response


def _signed_in(ctx: AppContext, token: str, next_url: str) -> Response:
    response = see_other(next_url)
    response.set_cookie(sessions.session_cookie_name(ctx.settings), token, httponly=True,
                        samesite="lax", path="/", secure=_secure(ctx),
                        max_age=ctx.settings.portal_session_max_hours * 3600)
    response.delete_cookie(SIGNIN_COOKIE, path="/portal")
    return response


@router.get("/portal/signin")
async def signin_page(request: Request, ctx: CtxDep, principal: MaybePrincipalDep,
                      next: str | None = None) -> Response:
    """The sign-in page (straight on if already signed in)."""
    if principal is not None:
        return see_other(safe_next(next))
    return _signin_page(request, ctx, next_url=safe_next(next))


@router.post("/portal/signin")
async def signin_local(request: Request, session: SessionDep, ctx: CtxDep) -> Response:
    """Local account sign-in (the embedded default: `openvisit admin create`)."""
    form = await request.form()
    next_url = safe_next(form_text(form, "next"))
    username = form_text(form, "username")
    cookie = request.cookies.get(SIGNIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(),
                                             form_text(form, "signin_token").encode()):
        return _signin_page(request, ctx, next_url=next_url, username=username, status_code=403,
                            error="This sign-in form had expired. Please sign in again.")
    password = form.get("password")
    try:
        account_id = await accounts.authenticate_local(
            ctx, login=username, password=password if isinstance(password, str) else "",
            address=request.client.host if request.client else "")
    except (TooManySignins, SigninBusy) as exc:
        response = _signin_page(request, ctx, next_url=next_url, username=username,
                                error=exc.message, status_code=exc.status_code,
                                error_title=exc.title)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except OpenVisitError as exc:
        message = exc.message
        if message == accounts.BAD_CREDENTIALS and ctx.settings.oidc_issuer:
            message = f"{message} {accounts.IDP_HINT}"
        return _signin_page(request, ctx, next_url=next_url, username=username,
                            error=message, status_code=exc.status_code)
    account = await accounts.active_account(session, account_id)
    if account is None:  # deactivated a moment ago
        return _signin_page(request, ctx, next_url=next_url, username=username,
                            error=accounts.BAD_CREDENTIALS, status_code=401)
    token = await sessions.start_session(session, settings=ctx.settings, account=account,
                                         method="local")
    return _signed_in(ctx, token, next_url)


@router.get("/portal/signin/idp")
async def signin_idp(session: SessionDep, ctx: CtxDep, next: str | None = None) -> Response:
    """Send the browser to the organisation's IdP (authorization code + PKCE)."""
    start = await _idp(ctx).start(ctx.http,
                                  redirect_uri=f"{ctx.settings.public_url}/portal/signin/callback")
    await nonces.put(session, scope="portal_idp", value=start.state, ttl=IDP_STATE_TTL,
                     data={"nonce": start.nonce, "verifier": start.code_verifier,
                           "next": safe_next(next)})
    return see_other(start.url)


@router.get("/portal/signin/callback")
async def signin_idp_callback(request: Request, session: SessionDep, ctx: CtxDep,
                              state: str | None = None, code: str | None = None,
                              error: str | None = None,
                              error_description: str | None = None) -> Response:
    """The IdP's redirect URI: check state, exchange the code, find the account, sign in."""
    data = await nonces.take(session, scope="portal_idp", value=state)
    if error or not code:
        from openvisit.smart.errors import safe_ehr_text

        said = safe_ehr_text(error_description or error or "no code", limit=120)
        return _signin_page(request, ctx, next_url=data["next"], status_code=401,
                            error=f"Your organisation's sign-in was not completed ({said}). "
                                  "Try again, or use a local account.")
    idp = _idp(ctx)
    claims = await idp.finish(ctx.http, code=code,
                              redirect_uri=f"{ctx.settings.public_url}/portal/signin/callback",
                              code_verifier=data["verifier"], nonce=data["nonce"])
    account = await accounts.account_for_idp(
        session, issuer=idp.issuer, subject=claims.subject,
        bootstrap_subjects=ctx.settings.portal_bootstrap_admin_subjects,
        default_organisation=ctx.settings.portal_default_organisation)
    token = await sessions.start_session(session, settings=ctx.settings, account=account,
                                         method="idp")
    return _signed_in(ctx, token, data["next"])


@router.post("/portal/signout")
async def signout(session: SessionDep, ctx: CtxDep, principal: PrincipalDep) -> Response:
    """End the session everywhere and forget the cookie."""
    await sessions.end_session(session, principal=principal)
    response = see_other("/portal/signin?notice=signed_out")
    response.delete_cookie(sessions.session_cookie_name(ctx.settings), path="/")
    return response
