"""The one place where the SMART core talks HTTP: turns transport faults into OpenVisit errors.

Contract: :func:`send` returns the :class:`httpx.Response` whatever its status (callers judge
the status), and raises ``error_cls(..., permanent=False)`` for timeouts and unreachable hosts.
:func:`json_object` returns a decoded JSON object or raises ``error_cls(..., permanent=True)``.
Messages name the host and path, never the query string (it may carry a tenant key) or a body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from openvisit.errors import OutboundError


def describe_url(url: str) -> str:
    """Return ``scheme://host/path`` of ``url``: safe to put in a message or a log line."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def send(
    client: httpx.AsyncClient,
    *,
    method: str,
    url: str,
    what: str,
    error_cls: type[OutboundError],
    headers: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
    follow_redirects: bool = False,
) -> httpx.Response:
    """Send one request; map transport failures to ``error_cls`` (retryable)."""
    try:
        return await client.request(
            method,
            url,
            headers=dict(headers or {}),
            data=dict(data) if data is not None else None,
            follow_redirects=follow_redirects,
        )
    except httpx.TimeoutException:
        raise error_cls(
            f"The EHR's {what} at {describe_url(url)} did not answer in time. "
            "Try again in a minute; if it keeps happening, check that the EHR is up and "
            "that OpenVisit's network can reach it.",
            permanent=False,
        ) from None
    except httpx.InvalidURL:
        raise error_cls(
            f"The EHR's {what} URL {describe_url(url)} is not a valid URL; check the FHIR base "
            "URL configured for this EHR endpoint.",
            permanent=True,
        ) from None
    except httpx.TransportError as exc:
        raise error_cls(
            f"OpenVisit could not reach the EHR's {what} at {describe_url(url)} "
            f"({type(exc).__name__}). Check the URL, DNS and firewall rules for this endpoint.",
            permanent=False,
        ) from None


def json_object(
    response: httpx.Response, *, what: str, error_cls: type[OutboundError]
) -> dict[str, Any]:
    """Decode ``response`` as a JSON object or raise ``error_cls`` (permanent)."""
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        content_type = response.headers.get("content-type", "no content type")
        raise error_cls(
            f"The EHR's {what} at {describe_url(str(response.request.url))} did not return "
            f"JSON (got {content_type.split(';')[0]}). The URL probably points at a login or "
            "error page rather than the FHIR server; check the FHIR base URL.",
            permanent=True,
        ) from None
    if not isinstance(body, dict):
        raise error_cls(
            f"The EHR's {what} at {describe_url(str(response.request.url))} returned JSON "
            "that is not an object; check the FHIR base URL.",
            permanent=True,
        )
    return body


def is_retryable_status(status_code: int) -> bool:
    """Return whether an HTTP status is a passing fault (429 or 5xx) worth retrying."""
    return status_code == 429 or status_code >= 500
