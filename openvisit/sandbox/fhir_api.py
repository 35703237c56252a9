"""The FHIR R4 REST API of the sandbox (FHIR R4 http.html).

Interactions: read, search (GET and POST ``_search``), create (conditional with
``If-None-Exist``), update (PUT, update-as-create), patch (JSON Patch), delete; ``metadata``
and the ``.well-known`` documents are public, all else needs a SMART access token (see
:mod:`openvisit.sandbox.fhir_access`). Responses are ``application/fhir+json``; errors are
OperationOutcome. Logs name ids and events, never content.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from openvisit.sandbox import discovery
from openvisit.sandbox.errors import FhirError, operation_outcome
from openvisit.sandbox.fhir_access import (
    Access,
    bearer_token,
    check_access,
    forbidden_resource,
)
from openvisit.sandbox.fhir_patch import PatchInvalid, PatchTestFailed, apply_patch
from openvisit.sandbox.fhir_search import search
from openvisit.sandbox.fhir_store import (
    RESOURCE_TYPES,
    Resource,
    etag,
    is_valid_id,
)
from openvisit.sandbox.fhir_validate import validate
from openvisit.sandbox.runtime import Sandbox, get_sandbox, with_query

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
MAX_BODY = 1_000_000


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


def fhir_response(
    content: Any, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return FhirResponse(content, status_code=status_code, headers=headers)


def _resource_headers(resource: Resource) -> dict[str, str]:
    meta = resource.get("meta", {})
    headers = {"ETag": etag(resource)}
    if "lastUpdated" in meta:
        moment = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00"))
        headers["Last-Modified"] = format_datetime(moment, usegmt=True)
    return headers


def _location(sandbox: Sandbox, resource: Resource) -> str:
    version = resource.get("meta", {}).get("versionId", "1")
    return (
        f"{sandbox.urls.fhir_base}/{resource['resourceType']}/{resource['id']}/_history/{version}"
    )


def _resource_type(request: Request) -> str:
    rtype: str = request.path_params["rtype"]
    if rtype not in RESOURCE_TYPES:
        raise FhirError(
            f"resource type {rtype!r} is not supported", status_code=404, issue_code="not-supported"
        )
    return rtype


def _resource_id(request: Request) -> str:
    rid: str = request.path_params["rid"]
    if not is_valid_id(rid):
        raise FhirError("invalid resource id", status_code=400, issue_code="invalid")
    return rid


def _authorize(request: Request, *, resource_type: str, permission: str) -> Access:
    sandbox = get_sandbox(request)
    token = bearer_token(
        request.headers.get("authorization"),
        grants=sandbox.grants,
        now=sandbox.now(),
        realm=sandbox.urls.fhir_base,
    )
    return check_access(token, resource_type=resource_type, permission=permission)


async def _json_body(request: Request, *, allowed: tuple[str, ...]) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in allowed:
        raise FhirError(
            f"Content-Type must be one of {', '.join(allowed)}",
            status_code=415,
            issue_code="not-supported",
        )
    body = await request.body()
    if len(body) > MAX_BODY:
        raise FhirError("body too large", status_code=413, issue_code="too-costly")
    try:
        return json.loads(body)
    except ValueError:
        raise FhirError("body is not valid JSON", status_code=400, issue_code="structure") from None


# -- public documents -----------------------------------------------------------------------


async def metadata(request: Request) -> Response:
    sandbox = get_sandbox(request)
    return fhir_response(discovery.capability_statement(sandbox.urls, now=sandbox.now()))


async def smart_configuration(request: Request) -> Response:
    return JSONResponse(discovery.smart_configuration(get_sandbox(request).urls))


async def openid_configuration(request: Request) -> Response:
    return JSONResponse(discovery.openid_configuration(get_sandbox(request).urls))


async def jwks(request: Request) -> Response:
    return JSONResponse(
        get_sandbox(request).key.public_jwks(), headers={"Cache-Control": "public, max-age=300"}
    )


# -- interactions ---------------------------------------------------------------------------


async def read(request: Request) -> Response:
    rtype, rid = _resource_type(request), _resource_id(request)
    access = _authorize(request, resource_type=rtype, permission="r")
    sandbox = get_sandbox(request)
    resource = sandbox.store.read(rtype, rid)
    if resource is None:
        raise FhirError(f"{rtype}/{rid} not found", status_code=404, issue_code="not-found")
    if not access.permits(resource):
        raise forbidden_resource(rtype)
    return fhir_response(resource, headers=_resource_headers(resource))


async def search_type(request: Request) -> Response:
    rtype = _resource_type(request)
    access = _authorize(request, resource_type=rtype, permission="s")
    sandbox = get_sandbox(request)
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        form = await request.form()
        params += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    strict = "handling=strict" in request.headers.get("prefer", "").replace(" ", "")
    candidates = [r for r in sandbox.store.all(rtype) if access.permits(r)]
    tz = sandbox.now().tzinfo
    assert tz is not None
    result = search(candidates, resource_type=rtype, params=params, tz=tz, strict=strict)
    window = result.matches[result.offset : result.offset + result.count]
    base = f"{sandbox.urls.fhir_base}/{rtype}"
    used = dict(result.used)
    used.pop("_offset", None)
    links = [
        {
            "relation": "self",
            "url": with_query(base, params={**used, "_offset": str(result.offset)}),
        }
    ]
    if result.offset + result.count < len(result.matches):
        links.append(
            {
                "relation": "next",
                "url": with_query(
                    base,
                    params={
                        **used,
                        "_offset": str(result.offset + result.count),
                        "_count": str(result.count),
                    },
                ),
            }
        )
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{base}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in window
    ]
    if result.ignored:
        entries.append(
            {
                "resource": operation_outcome(
                    [
                        {
                            "severity": "warning",
                            "code": "not-supported",
                            "diagnostics": "ignored search parameters: "
                            + ", ".join(result.ignored),
                        }
                    ]
                ),
                "search": {"mode": "outcome"},
            }
        )
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(result.matches),
        "link": links,
        "entry": entries,
    }
    log.info("sandbox.fhir_search type=%s total=%d", rtype, len(result.matches))
    return fhir_response(bundle)


async def create(request: Request) -> Response:
    rtype = _resource_type(request)
    access = _authorize(request, resource_type=rtype, permission="c")
    sandbox = get_sandbox(request)
    resource = await _json_body(request, allowed=(FHIR_JSON, "application/json"))
    validate(resource, resource_type=rtype)
    resource.pop("id", None)  # http.html §"create": the server assigns the id
    if not access.permits(resource):
        raise forbidden_resource(rtype)
    criteria = request.headers.get("if-none-exist")
    if criteria is None:
        stored, created = sandbox.store.create(resource), True
    else:
        stored, created = sandbox.store.create_unless_found(
            resource, find=_if_none_exist(sandbox, rtype, criteria, access=access)
        )
    headers = {**_resource_headers(stored), "Location": _location(sandbox, stored)}
    return _written(request, stored, status_code=201 if created else 200, headers=headers)


def _if_none_exist(
    sandbox: Sandbox, rtype: str, criteria: str, *, access: Access
) -> Callable[[list[Resource]], list[Resource]]:
    """The search of an ``If-None-Exist`` header (a query string without ``?``, http.html
    §3.1.0.8.1). Unknown parameters are refused (400) rather than ignored: an ignored one
    would match everything. Only resources the token may see count as matches, so the
    answer reveals nothing outside its compartment; ``c`` alone is enough to ask."""
    params = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
    if not params:
        raise FhirError("If-None-Exist holds no search", status_code=400, issue_code="invalid")
    tz = sandbox.now().tzinfo
    assert tz is not None

    def find(candidates: list[Resource]) -> list[Resource]:
        visible = [r for r in candidates if access.permits(r)]
        return search(visible, resource_type=rtype, params=params, tz=tz, strict=True).matches

    return find


async def update(request: Request) -> Response:
    rtype, rid = _resource_type(request), _resource_id(request)
    access = _authorize(request, resource_type=rtype, permission="u")
    sandbox = get_sandbox(request)
    resource = await _json_body(request, allowed=(FHIR_JSON, "application/json"))
    validate(resource, resource_type=rtype)
    if resource.get("id") != rid:
        raise FhirError(
            "the body's id must equal the id in the URL", status_code=400, issue_code="invalid"
        )
    if not access.permits(resource):
        raise forbidden_resource(rtype)

    def change(current: Resource | None) -> Resource:
        if current is not None and not access.permits(current):
            raise forbidden_resource(rtype)
        return dict(resource)

    stored, created = sandbox.store.update(
        rtype,
        rid,
        change,
        if_match=request.headers.get("if-match"),
        allow_create=True,
    )
    headers = _resource_headers(stored)
    if created:
        headers["Location"] = _location(sandbox, stored)
    return _written(request, stored, status_code=201 if created else 200, headers=headers)


async def patch(request: Request) -> Response:
    rtype, rid = _resource_type(request), _resource_id(request)
    access = _authorize(request, resource_type=rtype, permission="u")
    sandbox = get_sandbox(request)
    operations = await _json_body(request, allowed=(JSON_PATCH,))

    def change(current: Resource | None) -> Resource:
        assert current is not None  # allow_create=False
        if not access.permits(current):
            raise forbidden_resource(rtype)
        try:
            patched = apply_patch(current, operations=operations)
        except PatchTestFailed as exc:
            raise FhirError(str(exc), status_code=409, issue_code="conflict") from None
        except PatchInvalid as exc:
            raise FhirError(str(exc), status_code=422, issue_code="processing") from None
        if not isinstance(patched, dict) or patched.get("id") != rid:
            raise FhirError(
                "a patch cannot change the resource id", status_code=422, issue_code="processing"
            )
        validate(patched, resource_type=rtype)
        if not access.permits(patched):
            raise forbidden_resource(rtype)
        return patched

    stored, _ = sandbox.store.update(
        rtype,
        rid,
        change,
        if_match=request.headers.get("if-match"),
        allow_create=False,
    )
    return _written(request, stored, status_code=200, headers=_resource_headers(stored))


async def delete(request: Request) -> Response:
    rtype, rid = _resource_type(request), _resource_id(request)
    access = _authorize(request, resource_type=rtype, permission="d")
    sandbox = get_sandbox(request)
    current = sandbox.store.read(rtype, rid)
    if current is not None:
        if not access.permits(current):
            raise forbidden_resource(rtype)
        sandbox.store.delete(rtype, rid)
        log.info("sandbox.fhir_deleted type=%s id=%s", rtype, rid)
    return Response(status_code=204)


def _written(
    request: Request, resource: Resource, *, status_code: int, headers: dict[str, str]
) -> Response:
    # http.html §"Managing Return Content": honour Prefer: return=minimal / OperationOutcome.
    prefer = request.headers.get("prefer", "").replace(" ", "")
    if "return=minimal" in prefer:
        return Response(status_code=status_code, headers=headers)
    if "return=OperationOutcome" in prefer:
        outcome = operation_outcome(
            [{"severity": "information", "code": "informational", "diagnostics": "ok"}]
        )
        return fhir_response(outcome, status_code=status_code, headers=headers)
    return fhir_response(resource, status_code=status_code, headers=headers)


async def unsupported(request: Request) -> Response:
    raise FhirError(
        f"{request.method} {request.url.path} is not supported by the sandbox",
        status_code=404,
        issue_code="not-supported",
    )


def routes() -> list[BaseRoute]:
    """The FHIR routes, relative to the site root (``/fhir/...``)."""
    return [
        Route("/fhir/metadata", metadata, methods=["GET"]),
        Route("/fhir/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
        Route("/fhir/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/fhir/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/fhir/{rtype}/_search", search_type, methods=["POST"]),
        Route("/fhir/{rtype}", search_type, methods=["GET"]),
        Route("/fhir/{rtype}", create, methods=["POST"]),
        Route("/fhir/{rtype}/{rid}", read, methods=["GET"]),
        Route("/fhir/{rtype}/{rid}", update, methods=["PUT"]),
        Route("/fhir/{rtype}/{rid}", patch, methods=["PATCH"]),
        Route("/fhir/{rtype}/{rid}", delete, methods=["DELETE"]),
        # vread, history, operations...: answer in FHIR terms rather than a bare 404.
        Route("/fhir/{rest:path}", unsupported, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
