"""Token requests: authorization code, refresh and client credentials (backend services).

Spec: SMART App Launch IG STU 2.2 §2.0.10 "Obtain access token" (form fields, PKCE
``code_verifier``, response with launch context ``patient``, ``encounter``, ``fhirContext``,
``need_patient_banner``, ``smart_style_url``, ``intent``, ``tenant``), §2.0.11 "Refresh access
token", §2.0.7 (launch context), §5.1.4 "Backend services: obtaining an access token";
RFC 6749 §4.1.3, §4.1.4, §5.1 (successful response), §5.2 (error response), §6 (refresh);
RFC 7636 §4.5; Oracle Health documents an extra ``resource`` parameter (kept here).

Contract: each request function returns a :class:`TokenResponse` or raises
:class:`~openvisit.smart.errors.SmartTokenError`, whose message carries the EHR's RFC 6749
``error`` code and a hint; ``permanent=False`` for timeouts, unreachable hosts, 429 and 5xx.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from openvisit.smart._http import describe_url, is_retryable_status, json_object, send
from openvisit.smart.client_auth import ClientAuth
from openvisit.smart.discovery import SmartConfiguration
from openvisit.smart.errors import SmartTokenError, safe_ehr_text

Grant = Literal["authorization_code", "refresh_token", "client_credentials"]


class FhirContextItem(BaseModel):
    """One ``fhirContext`` entry (SMART STU 2.2 §2.0.7.2.1); extra members kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    reference: str | None = None
    canonical: str | None = None
    identifier: dict[str, Any] | None = None
    type: str | None = None
    role: str | None = None


class TokenResponse(BaseModel):
    """A successful token response with SMART launch context; unknown members in ``extras``.

    Token values are excluded from ``repr`` so a logged response cannot leak them.
    """

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    access_token: str = Field(min_length=1, repr=False)
    token_type: str = "Bearer"
    scope: str | None = None
    expires_in: int | None = None
    id_token: str | None = Field(default=None, repr=False)
    refresh_token: str | None = Field(default=None, repr=False)
    patient: str | None = None
    encounter: str | None = None
    fhir_context: list[FhirContextItem] = Field(default_factory=list, alias="fhirContext")
    need_patient_banner: bool | None = None
    smart_style_url: str | None = None
    intent: str | None = None
    tenant: str | None = None
    resource: str | None = None

    @field_validator("token_type")
    @classmethod
    def _bearer_case(cls, value: str) -> str:
        # RFC 6749 §5.1: token_type is case-insensitive; several EHRs send "bearer".
        return "Bearer" if value.lower() == "bearer" else value

    @field_validator("fhir_context", mode="before")
    @classmethod
    def _only_objects(cls, value: Any) -> Any:
        # SMART 1.0 servers sometimes sent bare strings; keep them as references.
        if isinstance(value, list):
            return [{"reference": v} if isinstance(v, str) else v for v in value]
        return value

    @property
    def extras(self) -> dict[str, Any]:
        """Members of the response this model does not name (vendor extensions)."""
        return dict(self.model_extra or {})

    @property
    def scopes(self) -> frozenset[str]:
        """The granted scopes as a set (empty when the EHR did not say)."""
        return frozenset((self.scope or "").split())

    def expires_at(self, *, issued_at: float) -> float | None:
        """Return the unix time the access token expires, given when it was issued."""
        return None if self.expires_in is None else issued_at + self.expires_in


_GRANT_WORDS: dict[Grant, str] = {
    "authorization_code": "The EHR refused the sign-in",
    "refresh_token": "The EHR refused to renew access",
    "client_credentials": "The EHR refused OpenVisit's system access",
}

_HINTS: dict[str, str] = {
    "invalid_client": "check the client id for this environment and that the EHR has "
    "OpenVisit's public key (JWKS URL or certificate) or client secret registered",
    "invalid_grant": "the code or refresh token is expired, already used or issued for "
    "another redirect URI; start again from the EHR",
    "unauthorized_client": "this client id is not allowed this grant type; ask the EHR "
    "analyst to check the client registration",
    "invalid_scope": "the EHR does not grant one of the requested scopes to this client",
    "unsupported_grant_type": "the EHR does not support this grant type for this client",
    "invalid_request": "the EHR rejected the request's parameters; check the redirect URI "
    "and client settings for this environment",
}


def _ehr_error(response: httpx.Response, *, grant: Grant, url: str) -> SmartTokenError:
    permanent = not is_retryable_status(response.status_code)
    try:
        body = json_object(response, what="token endpoint", error_cls=SmartTokenError)
    except SmartTokenError:
        body = {}
    error = body.get("error")
    if not isinstance(error, str) or not error:
        return SmartTokenError(
            f"{_GRANT_WORDS[grant]}: the token endpoint {describe_url(url)} answered HTTP "
            f"{response.status_code} without an OAuth error. "
            + ("Try again shortly." if not permanent else "Check the token endpoint URL."),
            permanent=permanent,
        )
    code = safe_ehr_text(error, limit=60)
    description = body.get("error_description")
    said = f" ({safe_ehr_text(description)})" if description else ""
    hint = _HINTS.get(code, "see the EHR's logs for this client")
    return SmartTokenError(
        f"{_GRANT_WORDS[grant]}: {code}{said}. What to do: {hint}.",
        ehr_error=code,
        permanent=permanent and code not in ("temporarily_unavailable", "server_error"),
    )


async def _token_request(
    client: httpx.AsyncClient,
    *,
    config: SmartConfiguration,
    grant: Grant,
    form: dict[str, str],
    auth: ClientAuth,
) -> TokenResponse:
    url = config.token_endpoint
    parts = auth.parts(token_url=url)
    body = {"grant_type": grant, **form, **parts.form}
    headers = {"Accept": "application/json", **parts.headers}
    response = await send(
        client,
        method="POST",
        url=url,
        what="token endpoint",
        error_cls=SmartTokenError,
        headers=headers,
        data=body,
    )
    if response.status_code != 200:
        raise _ehr_error(response, grant=grant, url=url)
    document = json_object(response, what="token endpoint", error_cls=SmartTokenError)
    if "error" in document:  # a few servers answer 200 with an error body
        raise _ehr_error(response, grant=grant, url=url)
    try:
        return TokenResponse.model_validate(document)
    except ValidationError as exc:
        fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        raise SmartTokenError(
            f"{_GRANT_WORDS[grant]}: the token response from {describe_url(url)} is malformed "
            f"({', '.join(fields) or 'body'}). Report this to the EHR analyst.",
            permanent=True,
        ) from None


async def exchange_code(
    client: httpx.AsyncClient,
    *,
    config: SmartConfiguration,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    auth: ClientAuth,
) -> TokenResponse:
    """Exchange an authorization code (with its PKCE verifier) for tokens and launch context."""
    return await _token_request(
        client,
        config=config,
        grant="authorization_code",
        auth=auth,
        form={"code": code, "redirect_uri": redirect_uri, "code_verifier": code_verifier},
    )


async def refresh(
    client: httpx.AsyncClient,
    *,
    config: SmartConfiguration,
    refresh_token: str,
    auth: ClientAuth,
    scope: str | None = None,
) -> TokenResponse:
    """Use a refresh token; ``scope`` may narrow the grant. A returned refresh token replaces
    the old one (SMART STU 2.2 §2.0.11); when none is returned the old one stays valid."""
    form = {"refresh_token": refresh_token}
    if scope is not None:
        form["scope"] = scope
    return await _token_request(client, config=config, grant="refresh_token", form=form, auth=auth)


async def client_credentials(
    client: httpx.AsyncClient,
    *,
    config: SmartConfiguration,
    scope: str,
    auth: ClientAuth,
) -> TokenResponse:
    """Obtain a backend-services token (``system/…`` scopes) without a user."""
    return await _token_request(
        client, config=config, grant="client_credentials", form={"scope": scope}, auth=auth
    )
