"""Errors → responses, in one place: JSON for API clients, a readable page for browsers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from openvisit.errors import OpenVisitError
from openvisit.i18n import gettext
from openvisit.logs import get_logger
from openvisit.web.middleware import route_template
from openvisit.web.templating import templates

log = get_logger(__name__)


def wants_json(request: Request) -> bool:
    """API paths and clients that ask for JSON get JSON; browsers get a page."""
    if request.url.path.startswith(("/api/", "/fhir", "/hl7/")):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def render_error(
    request: Request,
    *,
    status: int,
    code: str,
    message: str,
    title: str | None = None,
    details: dict[str, Any] | None = None,
    page: tuple[str, str] | None = None,
) -> Response:
    """JSON ``{"error": {code, message, details}}`` or the error page.

    ``page`` (title, message) words the page for its reader (a patient); the page then shows
    ``message`` folded away as the details for the IT team. JSON always carries ``message``.
    """
    if wants_json(request):
        body: dict[str, Any] = {"error": {"code": code, "message": message}}
        if details:
            body["error"]["details"] = details
        return JSONResponse(body, status_code=status)
    if page is not None:
        title, details = page[0], {**(details or {}), "technical": message}
        message = page[1]
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "title": title or _default_title(status),
            "message": message,
            "code": code,
            "details": details or {},
            "status": status,
        },
        status_code=status,
    )


def _default_title(status: int) -> str:
    """A plain title in the page's language (the request activated it, else English)."""
    if status == 404:
        return gettext("Page not found")
    if status in (401, 403):
        return gettext("Not allowed")
    if status == 410:
        return gettext("This link has expired")
    if status in (502, 504):
        # The EHR, an SMS provider…: another system's answer, not a fault of ours.
        return gettext("Another system did not answer as expected")
    if status >= 500:
        return gettext("Something went wrong on our side")
    return gettext("We could not do that")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(OpenVisitError)
    async def _openvisit_error(request: Request, exc: OpenVisitError) -> Response:
        log.info(
            "request_error",
            error_code=exc.code,
            status=exc.status_code,
            route=route_template(request.scope),
        )
        return render_error(
            request,
            status=exc.status_code,
            code=exc.code,
            message=exc.message,
            title=exc.title,
            details=exc.details,
            page=exc.page,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "problem": err.get("msg", "")}
            for err in exc.errors()
        ]
        fields = ", ".join(p["field"] for p in problems) or "the request"
        return render_error(
            request,
            status=422,
            code="invalid_input",
            message=f"Some of what was sent is missing or malformed: {fields}.",
            details={"problems": problems},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail) if exc.detail else _default_title(exc.status_code)
        if exc.status_code == 404:
            message = (
                "There is nothing at this address. Check the link, or start again from the EHR."
            )
        elif exc.status_code == 400 and "parsing the body" in message:
            message = (
                "The request body could not be read. Send UTF-8 JSON with "
                "'Content-Type: application/json' (or the form the page sends)."
            )
        return render_error(request, status=exc.status_code, code="http_error", message=message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception(
            "unhandled_error", route=route_template(request.scope), error_type=type(exc).__name__
        )
        return render_error(
            request,
            status=500,
            code="internal_error",
            message="An unexpected error happened. It has been logged; please try again, and "
            "tell your IT team the time it happened if it keeps failing.",
        )
