"""Web plumbing of the portal: who is signed in, CSRF, roles, and rendering with the layout.

- :class:`PortalRoute` turns "not signed in" into a redirect to the sign-in page on HTML
  routes (the JSON API, and clients asking a page for JSON, answer 401 through the shared
  error handler instead).
- :func:`current_principal` reads ``Authorization: Bearer ovt_…`` (API token) or the session
  cookie. On unsafe methods with a cookie session it requires the session's CSRF token (form
  field ``csrf_token`` or header ``X-CSRF-Token``) and, when the browser sends ``Origin``,
  that it is this deployment: SameSite=Lax already stops cross-site POSTs in current
  browsers; the token covers the rest.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import phonenumbers
from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.errors import NotAuthenticated, OpenVisitError, PermissionDenied
from openvisit.logs import get_logger
from openvisit.portal.signin import sessions
from openvisit.portal.signin.sessions import Principal
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.errors import wants_json
from openvisit.web.middleware import route_template
from openvisit.web.templating import templates

log = get_logger(__name__)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_HEADER = "x-csrf-token"
SIGNIN_PATH = "/portal/signin"
#: No caching of portal pages (they show configuration and tokens), and no framing.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # Same-origin requests then carry a real Origin header (checked on every change).
    "Referrer-Policy": "same-origin",
    # The Content-Security-Policy is the strict default of openvisit.web.security: forms
    # post to this origin only, and no page is framed.
}


class SignInRequired(NotAuthenticated):
    code = "sign_in_required"


async def remember_session(request: Request, session: SessionDep) -> None:
    """Keep the request's session where :class:`PortalRoute` can roll it back on an error."""
    request.state.portal_session = session


class PortalRoute(APIRoute):
    """HTML portal routes: "not signed in" becomes a redirect to the sign-in page (with
    ``next``); any other :class:`OpenVisitError` is shown inside the portal's own layout with
    a way back, rather than on the bare error page.

    Because the error becomes a normal response here, the request's transaction would commit;
    the handler therefore rolls it back first, so an error never leaves half-done changes
    (routers using this class add :func:`remember_session` as a dependency).

    The form a view (or the CSRF check) read is closed once the response is made: uploaded
    files are spooled to temporary files that nothing else would close."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except OpenVisitError as exc:
                await _roll_back(request)
                if wants_json(request):
                    # A script reading a page (Accept: application/json) gets the API's JSON
                    # errors (401, 403…) from the shared handler, not a redirect or a page.
                    raise
                if isinstance(exc, SignInRequired):
                    target = request.url.path + (
                        f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"{SIGNIN_PATH}?next={quote(target, safe='')}",
                                            status_code=303)
                log.info("portal_error", error_code=exc.code, status=exc.status_code,
                         route=route_template(request.scope))
                return problem(request, exc)
            finally:
                await request.close()

        return handler


async def _roll_back(request: Request) -> None:
    session = getattr(request.state, "portal_session", None)
    if isinstance(session, AsyncSession):
        await session.rollback()


def problem(request: Request, exc: OpenVisitError, *, back: str | None = None) -> Response:
    """An error page inside the portal layout, with a link back to where the user was."""
    principal = getattr(request.state, "portal_principal", None)
    if back is None:
        referer = request.headers.get("referer", "")
        same = _origin(referer) == _origin(str(request.base_url))
        back = urlsplit(referer).path if same else ""
        if not back.startswith("/portal") or back == request.url.path:
            back = "/portal"
    return render(request, "portal/problem.html", {
        "error": exc, "title": exc.title or _TITLES.get(exc.status_code, "That did not work"),
        "back": back}, principal=principal, status_code=exc.status_code)


_TITLES = {401: "Sign in required", 403: "Not allowed", 404: "Not found",
           409: "That conflicts with the current set-up", 410: "No longer valid",
           502: "The other system did not answer as expected"}


def _same_origin(request: Request, public_url: str) -> bool:
    # "null" is what browsers send under Referrer-Policy: no-referrer; the token decides then.
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return True
    allowed = {_origin(public_url), _origin(str(request.base_url))}
    return _origin(origin) in allowed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


async def _csrf_ok(request: Request, principal: Principal) -> bool:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get("csrf_token")
        sent = value if isinstance(value, str) else None
    expected = principal.csrf_token or ""
    return bool(sent) and hmac.compare_digest(str(sent).encode(), expected.encode())


async def optional_principal(request: Request, ctx: CtxDep) -> Principal | None:
    """The caller, or None when nobody is signed in (no CSRF check here).

    Read in a read-only session of its own, not the request's: the request's transaction
    then begins only when the view first writes, so a view that calls out to the network
    first (the live check, the approval sign-in) holds none meanwhile. The sliding idle
    expiry is written, at most once a minute, in a short transaction of its own.
    """
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    cookie = request.cookies.get(sessions.session_cookie_name(ctx.settings))
    principal: Principal | None = None
    async with ctx.db.read() as session:
        if scheme.lower() == "bearer" and value.strip():
            principal = await sessions.principal_from_api_token(session, secret=value.strip())
        elif cookie:
            principal = await sessions.principal_from_session(session, settings=ctx.settings,
                                                              token=cookie)
    if principal is not None and principal.due_for_touch:
        async with ctx.transaction() as session:
            await sessions.touch(session, principal=principal)
    return principal


async def current_principal(
    request: Request, ctx: CtxDep,
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    """The signed-in caller; raises :class:`SignInRequired`, or 403 for a failed CSRF check."""
    request.state.portal_principal = principal
    if principal is None:
        raise SignInRequired("Please sign in to the OpenVisit portal; your session has ended "
                             "or you have not signed in yet.", title="Sign in required")
    if request.method in UNSAFE and principal.via == "session":
        if not _same_origin(request, ctx.settings.public_url):
            raise PermissionDenied("This request came from another web site, so it was "
                                   "refused. Use the portal's own pages.", code="csrf_failed",
                                   title="Request refused")
        if not await _csrf_ok(request, principal):
            raise PermissionDenied(
                "This form is out of date or was not sent by the portal (security token "
                "missing or wrong). Reload the page and try again.", code="csrf_failed",
                title="Please reload the page")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
MaybePrincipalDep = Annotated[Principal | None, Depends(optional_principal)]


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """Undo a service call's partial writes if it raises (the form is then shown again)."""
    async with session.begin_nested():
        yield


def render(request: Request, template: str, context: dict[str, Any], *,
           principal: Principal | None, status_code: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    """A portal page with the layout's shared context (principal, CSRF token, navigation)."""
    base: dict[str, Any] = {"principal": principal, "phone": format_phone,
                            "csrf_token": principal.csrf_token if principal else "",
                            "path": request.url.path, "notice": request.query_params.get("notice")}
    return templates.TemplateResponse(request, template, {**base, **context},
                                      status_code=status_code,
                                      headers={**PAGE_HEADERS, **(headers or {})})


def format_phone(e164: str | None) -> str:
    """``+12025550100`` → ``+1 202-555-0100`` for people; E.164 stays what is stored."""
    if not e164:
        return ""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return str(phonenumbers.format_number(parsed,
                                          phonenumbers.PhoneNumberFormat.INTERNATIONAL))


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def form_text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def form_list(form: Any, name: str) -> list[str]:
    return [v for v in form.getlist(name) if isinstance(v, str) and v]


def form_bool(form: Any, name: str) -> bool:
    return form_text(form, name) in ("on", "true", "1", "yes")
