"""The error body every JSON endpoint answers with, and its OpenAPI description.

``{"error": {"code": "...", "message": "...", "details": {...}}}`` (see web/errors.py). Routers
declare the statuses they can answer with :func:`error_responses`, so the published schema says
what a client (and Schemathesis) will actually receive.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable reason, e.g. not_found.")
    message: str = Field(description="What went wrong and what to do, for a person.")
    details: dict[str, Any] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


_MEANING = {
    400: "The request could not be read.",
    401: "No valid credentials (API token, join token or session).",
    403: "The credentials are valid but do not allow this.",
    404: "Nothing with this id exists for these credentials.",
    409: "The change conflicts with the current state.",
    410: "The link or resource existed but has expired or was withdrawn.",
    413: "The request body is too large.",
    422: "Some of what was sent is missing or malformed; details name the fields.",
    429: "Too many requests; wait for Retry-After seconds.",
    502: "An outside system (the EHR, the SMS provider) answered with an error.",
    503: "A dependency is unavailable; try again later.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses, all with the :class:`ErrorOut` body."""
    return {code: {"model": ErrorOut, "description": _MEANING[code]} for code in codes}
