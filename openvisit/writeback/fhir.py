"""A small FHIR R4 client core for write-back: build requests, send them, judge the answer.

No web framework, no database: the caller injects an ``httpx.AsyncClient`` (the guarded
:func:`openvisit.outbound.portal_http`, since FHIR bases are typed by portal admins) and a
bearer token. Spec: FHIR R4 RESTful API (http://hl7.org/fhir/R4/http.html): create (§3.1.0.8),
conditional create with ``If-None-Exist`` (§3.1.0.8.1), update with ``If-Match`` and the
``ETag`` ``W/"<versionId>"`` (§3.1.0.4, §3.1.0.5.4 "managing resource contention"), patch with
JSON Patch ``application/json-patch+json`` (§3.1.0.5, RFC 6902); OperationOutcome (§2.37) for
errors; RFC 9110 §10.2.3 ``Retry-After`` (seconds or an HTTP date).

Contract: :meth:`FhirClient.send` returns a :class:`FhirAnswer` for 2xx and raises
:class:`FhirWriteError` otherwise, classified by :func:`classify`: ``retry`` for 5xx, 429,
408, timeouts and unreachable hosts (``retry_after`` when the server said when), ``conflict``
for 409/412 (read again and retry), ``permanent`` for other 4xx. Messages carry the EHR's own
words (from its OperationOutcome, through :func:`safe_ehr_text`), never a body or a token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from openvisit.errors import OutboundError
from openvisit.smart._http import describe_url
from openvisit.smart.errors import safe_ehr_text

__all__ = [
    "FHIR_JSON",
    "JSON_PATCH",
    "FhirAnswer",
    "FhirClient",
    "FhirRequest",
    "FhirWriteError",
    "Outcome",
    "classify",
    "conditional_create",
    "create",
    "etag_version",
    "operation_outcome_text",
    "patch",
    "read",
    "retry_after_seconds",
    "search",
    "update",
]

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
#: How an answer is judged: done, try again later, read again then retry, give up.
Outcome = Literal["ok", "retry", "conflict", "permanent"]
#: A server asking to wait longer than this is treated as "later" at the job's own backoff.
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True)
class FhirRequest:
    """One FHIR interaction, relative to the FHIR base (``path`` like ``AuditEvent/1``)."""

    method: str
    path: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    content_type: str = FHIR_JSON


@dataclass(frozen=True)
class FhirAnswer:
    """A 2xx answer: status, the resource (or ``{}``), its id/version and ``Location``."""

    status: int
    resource: dict[str, Any]
    location: str | None
    etag: str | None

    @property
    def resource_id(self) -> str | None:
        """The server's id: the body's, else the id in ``Location`` (``Type/id/_history/v``)."""
        rid = self.resource.get("id")
        if isinstance(rid, str) and rid:
            return rid
        if self.location:
            parts = self.location.rstrip("/").split("/")
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            return parts[-1] if parts else None
        return None

    @property
    def version(self) -> str | None:
        """The version id from ``meta.versionId``, else from the ``ETag``."""
        meta = self.resource.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("versionId"), str):
            return str(meta["versionId"])
        return etag_version(self.etag)


class FhirWriteError(OutboundError):
    """The EHR did not accept a write; ``outcome`` says what to do, ``ehr_message`` why."""

    code = "fhir_write_failed"

    def __init__(self, message: str, *, outcome: Outcome, http_status: int | None,
                 ehr_message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, permanent=outcome == "permanent",
                         details={"http_status": http_status})
        self.outcome: Outcome = outcome
        self.http_status = http_status
        self.ehr_message = ehr_message
        self.retry_after = retry_after


# --------------------------------------------------------------------------- building

def create(resource: dict[str, Any]) -> FhirRequest:
    """``POST [base]/[type]``."""
    return FhirRequest("POST", str(resource["resourceType"]), body=resource,
                       headers={"Prefer": "return=representation"})


def conditional_create(resource: dict[str, Any], *, if_none_exist: str) -> FhirRequest:
    """``POST [base]/[type]`` with ``If-None-Exist: <search>``: a retry finds the first copy
    (200) instead of making a second one (201). ``if_none_exist`` is a query string such as
    ``_tag=urn:openvisit:writeback|<key>``."""
    return FhirRequest("POST", str(resource["resourceType"]), body=resource,
                       headers={"If-None-Exist": if_none_exist,
                                "Prefer": "return=representation"})


def read(resource_type: str, resource_id: str) -> FhirRequest:
    """``GET [base]/[type]/[id]``."""
    return FhirRequest("GET", f"{resource_type}/{resource_id}")


def search(resource_type: str, params: Mapping[str, str]) -> FhirRequest:
    """``GET [base]/[type]?params``."""
    return FhirRequest("GET", resource_type, params=dict(params))


def update(resource: dict[str, Any], *, version: str | None) -> FhirRequest:
    """``PUT [base]/[type]/[id]``, with ``If-Match: W/"<version>"`` when the version is known
    (a change made by someone else meanwhile is then refused with 412, not overwritten)."""
    headers = {"Prefer": "return=representation"}
    if version is not None:
        headers["If-Match"] = f'W/"{version}"'
    return FhirRequest("PUT", f"{resource['resourceType']}/{resource['id']}", body=resource,
                       headers=headers)


def patch(resource_type: str, resource_id: str, operations: list[dict[str, Any]], *,
          version: str | None) -> FhirRequest:
    """``PATCH [base]/[type]/[id]`` with a JSON Patch document and ``If-Match``."""
    headers = {"Prefer": "return=representation"}
    if version is not None:
        headers["If-Match"] = f'W/"{version}"'
    return FhirRequest("PATCH", f"{resource_type}/{resource_id}", body=operations,
                       headers=headers, content_type=JSON_PATCH)


def etag_version(etag: str | None) -> str | None:
    """``W/"3"`` → ``3`` (a strong ``"3"`` too); None when absent."""
    if not etag:
        return None
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


# --------------------------------------------------------------------------- judging

def operation_outcome_text(body: Any, *, limit: int = 300) -> str:
    """The readable part of an OperationOutcome: each issue's ``details.text`` or
    ``diagnostics`` (with its ``expression``/``location``), joined by ``; ``. Empty when the
    body is not one. Made safe to show and store (:func:`safe_ehr_text`)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    said: list[str] = []
    for issue in body.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        text = (details.get("text") if isinstance(details, dict) else None) \
            or issue.get("diagnostics") or issue.get("code") or ""
        where = issue.get("expression") or issue.get("location") or []
        if isinstance(where, list) and where:
            text = f"{text} ({', '.join(str(w) for w in where[:3])})"
        if text:
            said.append(str(text))
    return safe_ehr_text("; ".join(said), limit=limit)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now (RFC 9110 §10.2.3: delay-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


def classify(status: int) -> Outcome:
    """What an HTTP status means for a write: 2xx ok; 409 (version conflict, Oracle's
    "conflicting update") and 412 (If-Match failed) ``conflict``; 408, 429, 5xx ``retry``;
    other 4xx ``permanent`` (the request itself is wrong: retrying cannot help)."""
    if 200 <= status < 300:
        return "ok"
    if status in (409, 412):
        return "conflict"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "permanent"


class FhirClient:
    """Sends :class:`FhirRequest` s to one FHIR base with one bearer token."""

    def __init__(self, http: httpx.AsyncClient, *, base: str, access_token: str | None,
                 extra_headers: Mapping[str, str] | None = None) -> None:
        self._http = http
        self.base = base.rstrip("/")
        self._token = access_token
        self._extra = dict(extra_headers or {})

    async def send(self, request: FhirRequest) -> FhirAnswer:
        """Send; return the 2xx answer or raise a classified :class:`FhirWriteError`."""
        url = f"{self.base}/{request.path.lstrip('/')}"
        headers = {"Accept": FHIR_JSON, **self._extra, **request.headers}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        content: bytes | None = None
        if request.body is not None:
            headers["Content-Type"] = request.content_type
            content = json.dumps(request.body, separators=(",", ":")).encode()
        what = f"{request.method} {request.path.split('/')[0]}"
        try:
            response = await self._http.request(request.method, url, headers=headers,
                                                 content=content, params=dict(request.params))
        except httpx.TimeoutException:
            raise FhirWriteError(
                f"The EHR at {describe_url(url)} did not answer {what} in time; OpenVisit "
                "will try again.", outcome="retry", http_status=None) from None
        except httpx.TransportError as exc:
            raise FhirWriteError(
                f"OpenVisit could not reach the EHR at {describe_url(url)} for {what} "
                f"({type(exc).__name__}); it will try again. Check the FHIR base URL, DNS and "
                "firewall if this lasts.", outcome="retry", http_status=None) from None
        except OutboundError as exc:  # the guarded client refused the address
            raise FhirWriteError(exc.message, outcome="permanent", http_status=None) from None
        return self._judge(response, what=what, url=url)

    def _judge(self, response: httpx.Response, *, what: str, url: str) -> FhirAnswer:
        status = response.status_code
        try:
            body: Any = json.loads(response.content) if response.content else {}
        except (ValueError, UnicodeDecodeError):
            body = None
        outcome = classify(status)
        if outcome == "ok":
            return FhirAnswer(status=status, resource=body if isinstance(body, dict) else {},
                              location=response.headers.get("location")
                              or response.headers.get("content-location"),
                              etag=response.headers.get("etag"))
        said = operation_outcome_text(body)
        wait = retry_after_seconds(response.headers.get("retry-after"))
        raise FhirWriteError(
            f"The EHR answered {what} with HTTP {status}"
            + (f": {said}" if said else " (no OperationOutcome)")
            + {"retry": "; OpenVisit will try again.",
               "conflict": "; the record changed meanwhile, OpenVisit reads it again.",
               "permanent": "."}[outcome],
            outcome=outcome, http_status=status, ehr_message=said, retry_after=wait)
