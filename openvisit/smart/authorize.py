"""The SMART authorization request and the redirect back from the EHR.

Spec: SMART App Launch IG STU 2.2 §2.0.8 "Obtain authorization code" (parameters
``response_type=code``, ``client_id``, ``redirect_uri``, ``launch``, ``scope``, ``state``,
``aud``, ``code_challenge``, ``code_challenge_method=S256``; GET, or POST when the EHR
advertises ``authorize-post``); RFC 6749 §3.1 (keep the endpoint's own query component, no
fragment), §4.1.2 and §4.1.2.1 (the response and its ``error``); RFC 7636 §4.3; OpenID
Connect Core 1.0 §3.1.2.1 (``nonce``).

Contract: builders return an :class:`AuthorizeRequest` (or a URL) and raise
:class:`~openvisit.errors.InvalidInput` for unusable arguments; :func:`parse_authorize_response`
returns the authorization code or raises :class:`~openvisit.smart.errors.SmartAuthorizeError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from openvisit.errors import InvalidInput
from openvisit.smart.discovery import SmartConfiguration
from openvisit.smart.errors import SmartAuthorizeError, safe_ehr_text
from openvisit.smart.state import values_match

_CORE = (
    "response_type",
    "client_id",
    "redirect_uri",
    "launch",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "nonce",
)


@dataclass(frozen=True)
class AuthorizeRequest:
    """How to send the user to the EHR: redirect to ``url`` (GET) or auto-post ``form`` to it."""

    method: Literal["GET", "POST"]
    url: str
    form: Mapping[str, str] = field(default_factory=dict)


def authorize_params(
    *,
    client_id: str,
    redirect_uri: str,
    scope: str | Sequence[str],
    state: str,
    aud: str,
    code_challenge: str,
    launch: str | None = None,
    nonce: str | None = None,
    extra_params: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the authorization request parameters, in the order the IG lists them."""
    scope_text = scope if isinstance(scope, str) else " ".join(scope)
    required = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope_text,
        "state": state,
        "aud": aud,
        "code_challenge": code_challenge,
    }
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise InvalidInput(f"The authorization request needs {', '.join(missing)}.")
    if urlsplit(aud).scheme not in ("https", "http"):
        raise InvalidInput("aud must be the EHR's absolute FHIR base URL (the launch's iss).")
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri}
    if launch is not None:
        if not launch:
            raise InvalidInput("The EHR sent an empty launch parameter; relaunch from the EHR.")
        params["launch"] = launch
    params.update(
        scope=scope_text,
        state=state,
        aud=aud,
        code_challenge=code_challenge,
        code_challenge_method="S256",
    )
    if nonce is not None:
        params["nonce"] = nonce
    clash = sorted(set(extra_params or {}) & set(_CORE))
    if clash:
        raise InvalidInput(f"extra_params may not override {', '.join(clash)}.")
    params.update(extra_params or {})
    return params


def _split_endpoint(authorization_endpoint: str) -> tuple[str, list[tuple[str, str]]]:
    parts = urlsplit(authorization_endpoint)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InvalidInput("The EHR's authorization_endpoint is not an absolute URL.")
    if parts.fragment:
        raise InvalidInput(
            "The EHR's authorization_endpoint contains a #fragment, which RFC 6749 §3.1 "
            "forbids; ask the EHR administrator to correct its SMART configuration."
        )
    existing = parse_qsl(parts.query, keep_blank_values=True)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return base, existing


def build_authorize_url(
    authorization_endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str | Sequence[str],
    state: str,
    aud: str,
    code_challenge: str,
    launch: str | None = None,
    nonce: str | None = None,
    extra_params: Mapping[str, str] | None = None,
) -> str:
    """Return the GET authorization URL; query parameters already in the endpoint are kept.

    An endpoint parameter with the same name as a SMART parameter is replaced by ours, so the
    request is never ambiguous.
    """
    params = authorize_params(
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        aud=aud,
        code_challenge=code_challenge,
        launch=launch,
        nonce=nonce,
        extra_params=extra_params,
    )
    base, existing = _split_endpoint(authorization_endpoint)
    merged = [(k, v) for k, v in existing if k not in params] + list(params.items())
    return base + "?" + urlencode(merged, quote_via=quote, safe="")


def build_authorize_request(
    config: SmartConfiguration,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str | Sequence[str],
    state: str,
    aud: str,
    code_challenge: str,
    launch: str | None = None,
    nonce: str | None = None,
    extra_params: Mapping[str, str] | None = None,
    prefer_post: bool = False,
) -> AuthorizeRequest:
    """Return a GET request, or a POST form when ``prefer_post`` and ``authorize-post`` is on.

    Raises ``EhrCapabilityMissing`` when the EHR has no authorization endpoint. For POST the
    endpoint (with any query it already had) is the form action and the SMART parameters are
    the form fields (SMART STU 2.2 §2.0.8.1).
    """
    endpoint = config.require_authorization_endpoint()
    if prefer_post and config.supports("authorize-post"):
        form = authorize_params(
            client_id=client_id,
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
            aud=aud,
            code_challenge=code_challenge,
            launch=launch,
            nonce=nonce,
            extra_params=extra_params,
        )
        _split_endpoint(endpoint)  # same URL checks as for GET
        return AuthorizeRequest(method="POST", url=endpoint, form=form)
    url = build_authorize_url(
        endpoint,
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        aud=aud,
        code_challenge=code_challenge,
        launch=launch,
        nonce=nonce,
        extra_params=extra_params,
    )
    return AuthorizeRequest(method="GET", url=url)


_ERROR_HINTS = {
    "access_denied": "the user or the EHR declined the request",
    "invalid_scope": "the EHR does not grant one of the requested scopes to this client",
    "unauthorized_client": "this client id may not use the authorization code flow here",
    "invalid_request": "the EHR rejected the request's parameters (check the redirect URI "
    "registered for this client)",
    "server_error": "the EHR had an internal error; try again",
    "temporarily_unavailable": "the EHR is busy; try again in a minute",
}


def parse_authorize_response(params: Mapping[str, str], *, expected_state: str) -> str:
    """Check the redirect's ``state`` and return its ``code`` (RFC 6749 §4.1.2).

    Raises ``SmartAuthorizeError`` when the EHR returned an ``error``, the ``state`` does not
    match the one stored for this browser (a stale tab or a forged request), or no code came.
    """
    if not values_match(expected_state, params.get("state")):
        raise SmartAuthorizeError(
            "This sign-in response does not belong to this browser session (state mismatch). "
            "Close this tab and start the visit again from the EHR.",
            code="smart_state_mismatch",
        )
    error = params.get("error")
    if error:
        code = safe_ehr_text(error, limit=60)
        hint = _ERROR_HINTS.get(code, "see the EHR's logs for details")
        description = params.get("error_description")
        said = f" ({safe_ehr_text(description)})" if description else ""
        raise SmartAuthorizeError(
            f"The EHR did not grant access: {code}{said}: {hint}. Start again from the EHR; "
            "if it keeps happening, ask the EHR analyst to check OpenVisit's client set-up.",
            ehr_error=code,
            permanent=code not in ("server_error", "temporarily_unavailable"),
        )
    code_value = params.get("code")
    if not code_value:
        raise SmartAuthorizeError(
            "The EHR redirected back without an authorization code. Start again from the EHR."
        )
    return code_value
