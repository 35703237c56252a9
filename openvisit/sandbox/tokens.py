"""The token endpoint (RFC 6749 §3.2, SMART App Launch 2.2 §"Obtain access token").

Grants: ``authorization_code`` (single use, short life, same client and redirect URI, PKCE
S256 verifier, RFC 7636 §4.6), ``refresh_token`` (rotated on every use; an optional narrower
``scope`` applies to the new access token only, RFC 6749 §6) and ``client_credentials`` for
SMART Backend Services (``private_key_jwt`` only, ``system/`` scopes only, tokens live at most
300 s). The response carries the SMART launch context (``patient``, ``encounter``,
``fhirContext``, ``need_patient_banner``, ``smart_style_url``) and, with ``openid``, an RS256
``id_token`` (OpenID Connect Core §2) whose ``fhirUser`` is the absolute URL of the user's
Practitioner or Patient. Errors are RFC 6749 §5.2 JSON; every answer is ``no-store``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from openvisit.sandbox import pkce, scopes
from openvisit.sandbox.client_auth import AuthenticatedClient, authenticate_client
from openvisit.sandbox.errors import OAuthError
from openvisit.sandbox.grants import IssuedToken, TokenContext, new_secret
from openvisit.sandbox.runtime import Sandbox, get_sandbox

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM = "application/x-www-form-urlencoded"


async def token(request: Request) -> Response:
    """Handle one token request; JSON success (200) or RFC 6749 §5.2 error."""
    sandbox = get_sandbox(request)
    authorization = request.headers.get("authorization")
    try:
        form = await _form(request)
        now = sandbox.now()

        def remember(client_id: str, jti: str, expires_at: datetime) -> bool:
            return sandbox.grants.remember_jti(
                client_id=client_id, jti=jti, expires_at=expires_at, now=now
            )

        authed = await authenticate_client(
            form=form,
            authorization=authorization,
            registry=sandbox.clients,
            token_url=sandbox.urls.token_url,
            now=now,
            jwks_fetcher=sandbox.jwks_fetcher,
            remember_jti=remember,
        )
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            body = _authorization_code(sandbox, form, authed, now=now)
        elif grant_type == "refresh_token":
            body = _refresh_token(sandbox, form, authed, now=now)
        elif grant_type == "client_credentials":
            body = _client_credentials(sandbox, form, authed, now=now)
        else:
            raise OAuthError(
                "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
            )
    except OAuthError as exc:
        headers = dict(NO_STORE)
        if exc.status_code == 401 and authorization and authorization.lower().startswith("basic"):
            headers["WWW-Authenticate"] = 'Basic realm="sandbox"'
        log.info("sandbox.token_refused error=%s", exc.error)
        return JSONResponse(exc.as_json(), status_code=exc.status_code, headers=headers)
    log.info(
        "sandbox.token_issued client_id=%s grant_type=%s method=%s",
        authed.client.client_id,
        grant_type,
        authed.method,
    )
    return JSONResponse(body, headers=NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _FORM:
        raise OAuthError("invalid_request", f"the token request must be {_FORM}")
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if key in out:  # RFC 6749 §3.2: parameters must not repeat
            raise OAuthError("invalid_request", f"parameter {key} is repeated")
        if isinstance(value, str):
            out[key] = value
    return out


def _authorization_code(
    sandbox: Sandbox, form: dict[str, str], authed: AuthenticatedClient, *, now: datetime
) -> dict[str, Any]:
    if not form.get("code"):
        raise OAuthError("invalid_request", "code is required")
    record = sandbox.grants.consume_code(form["code"], client_id=authed.client.client_id, now=now)
    if form.get("redirect_uri") != record.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri differs from the authorize request")
    verifier = form.get("code_verifier", "")
    if not verifier:
        raise OAuthError("invalid_grant", "code_verifier is required (PKCE)")
    if not pkce.verify_s256(verifier, challenge=record.code_challenge):
        raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
    return _issue(
        sandbox,
        context=record.context,
        family=record.family,
        now=now,
        ttl=sandbox.lifetimes.access,
        nonce=record.context.nonce,
    )


def _refresh_token(
    sandbox: Sandbox, form: dict[str, str], authed: AuthenticatedClient, *, now: datetime
) -> dict[str, Any]:
    if not form.get("refresh_token"):
        raise OAuthError("invalid_request", "refresh_token is required")
    wanted = form.get("scope", "").split()

    def no_wider(record: IssuedToken) -> None:
        if not scopes.is_subset(wanted, wider=record.context.scopes):
            raise OAuthError("invalid_scope", "a refresh cannot widen the granted scope")

    old = sandbox.grants.rotate_refresh(
        form["refresh_token"], client_id=authed.client.client_id, now=now, check=no_wider
    )
    context = old.context
    if wanted:
        context = replace(context, scopes=tuple(dict.fromkeys(wanted)))
    return _issue(
        sandbox,
        context=context,
        family=old.family,
        now=now,
        ttl=sandbox.lifetimes.access,
        refresh_context=old.context,
        nonce=None,
    )


def _client_credentials(
    sandbox: Sandbox, form: dict[str, str], authed: AuthenticatedClient, *, now: datetime
) -> dict[str, Any]:
    if authed.method != "private_key_jwt":
        raise OAuthError(
            "unauthorized_client", "backend services (client_credentials) must use private_key_jwt"
        )
    granted = [
        s
        for s in scopes.grant(form.get("scope", "").split(), allowed=authed.client.scopes)
        if s.startswith("system/")
    ]
    if not granted:
        raise OAuthError("invalid_scope", "request system/ scopes this client is registered for")
    context = TokenContext(client_id=authed.client.client_id, scopes=tuple(granted))
    ttl = min(sandbox.lifetimes.system_access, timedelta(seconds=300))
    return _issue(sandbox, context=context, family=new_secret(), now=now, ttl=ttl, nonce=None)


def _issue(
    sandbox: Sandbox,
    *,
    context: TokenContext,
    family: str,
    now: datetime,
    ttl: timedelta,
    nonce: str | None,
    refresh_context: TokenContext | None = None,
) -> dict[str, Any]:
    access = sandbox.grants.issue_access(context=context, expires_at=now + ttl, family=family)
    body: dict[str, Any] = {
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": int(ttl.total_seconds()),
        "scope": " ".join(context.scopes),
    }
    refresh_scopes = (refresh_context or context).scopes
    if context.user is not None and {"offline_access", "online_access"} & set(refresh_scopes):
        body["refresh_token"] = sandbox.grants.issue_refresh(
            context=refresh_context or context,
            expires_at=now + sandbox.lifetimes.refresh,
            family=family,
        ).token
    if context.user is not None and "openid" in context.scopes:
        body["id_token"] = _id_token(sandbox, context=context, now=now, nonce=nonce)
    if context.patient is not None:
        body["patient"] = context.patient
    if context.encounter is not None:
        body["encounter"] = context.encounter
    if context.appointment is not None:
        body["fhirContext"] = [{"reference": f"Appointment/{context.appointment}"}]
    if context.user is not None:
        body["need_patient_banner"] = context.need_patient_banner
        body["smart_style_url"] = sandbox.urls.smart_style_url
    return body


def _id_token(sandbox: Sandbox, *, context: TokenContext, now: datetime, nonce: str | None) -> str:
    assert context.user is not None
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": sandbox.urls.issuer,
        "sub": context.user,
        "aud": context.client_id,
        "iat": issued,
        "exp": issued + int(sandbox.lifetimes.id_token.total_seconds()),
    }
    if context.auth_time is not None:
        claims["auth_time"] = context.auth_time
    if nonce:
        claims["nonce"] = nonce
    # SMART 2.2: fhirUser is granted by the fhirUser scope (v1 servers used profile).
    if {"fhirUser", "profile"} & set(context.scopes):
        claims["fhirUser"] = f"{sandbox.urls.fhir_base}/{context.user}"
    return sandbox.key.sign(claims)


def routes() -> list[BaseRoute]:
    return [Route("/auth/token", token, methods=["POST"])]
