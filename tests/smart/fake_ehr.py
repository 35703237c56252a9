"""A tiny in-process SMART EHR (discovery, /metadata, authorize, token, JWKS) for the tests.

It checks what OpenVisit sends with an *independent* implementation: client assertions are
verified with Authlib's legacy ``authlib.jose`` (OpenVisit signs with ``joserfc``) against the
JWKS OpenVisit publishes, and PKCE is recomputed here with hashlib. id_tokens are signed with
``authlib.jose`` too, so OpenVisit's verifier never checks its own output.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
import warnings
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import unquote_plus, urlencode

import authlib.deprecate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

# authlib.jose warns on import that it is deprecated (attributed to the importer); it is still
# the independent JOSE implementation we want as a referee, so silence only that warning.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, JsonWebToken
    from authlib.jose.errors import JoseError

HOST = "https://ehr.test"
FHIR_BASE = f"{HOST}/fhir/r4"
ISSUER = f"{HOST}/oauth2"
TOKEN_URL = f"{HOST}/oauth2/token"
AUTHORIZE_URL = f"{HOST}/oauth2/authorize?tenant=t1"
JWKS_URI = f"{HOST}/oauth2/jwks"
CLIENT_ID = "openvisit-test"
REDIRECT_URI = "https://openvisit.test/launch/callback"


def s256(verifier: str) -> str:
    """RFC 7636 §4.2, written out independently of openvisit.smart.pkce."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def smart_configuration() -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "jwks_uri": JWKS_URI,
        "authorization_endpoint": AUTHORIZE_URL,
        "token_endpoint": TOKEN_URL,
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "scopes_supported": ["openid", "fhirUser", "launch", "user/Appointment.rs"],
        "capabilities": [
            "launch-ehr",
            "launch-standalone",
            "client-confidential-asymmetric",
            "client-confidential-symmetric",
            "client-public",
            "context-ehr-encounter",
            "sso-openid-connect",
            "authorize-post",
        ],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "private_key_jwt",
            "client_secret_basic",
            "client_secret_post",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "response_types_supported": ["code"],
    }


def capability_statement(version: str = "4.0.1") -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "kind": "instance",
        "fhirVersion": version,
        "format": ["json"],
        "software": {"name": "FakeEHR", "version": "1.2"},
        "rest": [{"mode": "server", "resource": [{"type": "Appointment"}, {"type": "Patient"}]}],
    }


class FakeEhr:
    """State and routes of the fake EHR; tests tweak the public attributes."""

    def __init__(self, *, client_jwks: Callable[[], dict[str, Any]]) -> None:
        self.client_jwks = client_jwks  # what OpenVisit "registered": its published JWKS
        self.client_secret = "s3cret:with/odd+chars"
        self.smart_config = smart_configuration()
        self.metadata: dict[str, Any] | str = capability_statement()
        self.ehr_keys = [
            JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "ehr-1"})
        ]
        self.codes: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.seen_jti: set[str] = set()
        self.verified: list[dict[str, Any]] = []  # headers+claims of accepted assertions
        self.hits: dict[str, int] = {}
        self.next_answer: tuple[int, Any] | None = None
        self.discovery_status = 200
        self.id_token_claims: dict[str, Any] = {}
        #: The context each ``launch`` value gets; ``None`` is a standalone launch (no
        #: ``launch`` parameter), which gets no context unless a test gives it one.
        self.launch_contexts: dict[str | None, dict[str, Any]] = {
            "launch-123": {
                "fhirContext": [{"reference": "Appointment/apt-9"}],
                "encounter": "enc-4",
                "patient": "pat-7",
            },
            None: {},
        }
        #: The ``scope`` of each authorize request, in order.
        self.requested_scopes: list[str] = []
        #: Seconds the token endpoint and the discovery document wait before answering.
        self.token_delay = 0.0
        self.discovery_delay = 0.0
        #: How the token endpoint reads an ``Authorization: Basic`` header: ``"form"``
        #: URL-decodes id and secret (RFC 6749 §2.3.1), ``"raw"`` takes them as they are
        #: (what many servers do).
        self.basic_decoding: Literal["form", "raw"] = "form"
        #: FHIR resources by "Type/id"; Appointment reads not found here get the default one.
        self.resources: dict[str, dict[str, Any]] = {}
        #: "Type/id" (or "Appointment?" for the search) → HTTP status to answer instead.
        self.fhir_status: dict[str, int] = {}
        #: Check resource reads and searches against the access token's granted scopes.
        self.enforce_scopes = False
        #: Each FHIR request as "Type/id" or "Type?query".
        self.fhir_requests: list[str] = []
        self._access_scopes: dict[str, str] = {}
        self.app = Starlette(
            routes=[
                Route("/fhir/r4/.well-known/smart-configuration", self.discovery),
                Route("/fhir/r4/metadata", self.capability),
                Route("/oauth2/jwks", self.jwks),
                Route("/oauth2/authorize", self.authorize, methods=["GET", "POST"]),
                Route("/oauth2/token", self.token, methods=["POST"]),
                Route("/fhir/r4/Appointment", self.appointment_search),
                Route("/fhir/r4/Appointment/{id}", self.appointment),
                Route("/fhir/r4/Encounter/{id}", self.encounter),
            ]
        )

    def _hit(self, name: str) -> None:
        self.hits[name] = self.hits.get(name, 0) + 1

    # --- discovery -------------------------------------------------------------------------
    async def discovery(self, request: Request) -> Response:
        self._hit("discovery")
        if self.discovery_delay:
            await asyncio.sleep(self.discovery_delay)
        return JSONResponse(self.smart_config, status_code=self.discovery_status)

    async def capability(self, request: Request) -> Response:
        self._hit("metadata")
        if isinstance(self.metadata, str):
            return Response(self.metadata, media_type="text/html")
        return JSONResponse(self.metadata, media_type="application/fhir+json")

    async def jwks(self, request: Request) -> Response:
        self._hit("jwks")
        return JSONResponse({"keys": [k.as_dict(is_private=False) for k in self.ehr_keys]})

    @staticmethod
    def booked_now(appointment_id: str, *, patient: str = "pat-7",
                   practitioner: str = "prac-1") -> dict[str, Any]:
        """A booked appointment starting now (enough for a launch to find its visit)."""
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1800))
        return {"resourceType": "Appointment", "id": appointment_id, "status": "booked",
                "start": start, "end": end,
                "participant": [{"actor": {"reference": f"Patient/{patient}"}},
                                {"actor": {"reference": f"Practitioner/{practitioner}"}}]}

    def _refusal(self, request: Request, *, resource_type: str, key: str,
                 permission: str) -> Response | None:
        """401 without a live bearer token, 403 without a granted scope, or a set status."""
        self.fhir_requests.append(key)
        bearer = request.headers.get("authorization", "")
        if not bearer.startswith("Bearer "):
            return JSONResponse({"resourceType": "OperationOutcome"}, status_code=401)
        if key in self.fhir_status:
            return JSONResponse({"resourceType": "OperationOutcome"},
                                status_code=self.fhir_status[key])
        if self.enforce_scopes:
            granted = self._access_scopes.get(bearer[7:])
            if granted is None:
                return JSONResponse({"resourceType": "OperationOutcome"}, status_code=401)
            if not scope_allows(granted, resource_type=resource_type, permission=permission):
                return JSONResponse({"resourceType": "OperationOutcome"}, status_code=403)
        return None

    async def appointment(self, request: Request) -> Response:
        self._hit("appointment")
        key = f"Appointment/{request.path_params['id']}"
        refused = self._refusal(request, resource_type="Appointment", key=key, permission="r")
        if refused is not None:
            return refused
        resource = self.resources.get(key) or self.booked_now(request.path_params["id"])
        return JSONResponse(resource, media_type="application/fhir+json")

    async def encounter(self, request: Request) -> Response:
        self._hit("encounter")
        key = f"Encounter/{request.path_params['id']}"
        refused = self._refusal(request, resource_type="Encounter", key=key, permission="r")
        if refused is not None:
            return refused
        if key not in self.resources:
            return JSONResponse({"resourceType": "OperationOutcome"}, status_code=404)
        return JSONResponse(self.resources[key], media_type="application/fhir+json")

    async def appointment_search(self, request: Request) -> Response:
        """``Appointment?patient=…``: the patient's appointments among ``resources``."""
        self._hit("appointment_search")
        refused = self._refusal(request, resource_type="Appointment", key="Appointment?",
                                permission="s")
        if refused is not None:
            return refused
        self.fhir_requests[-1] = f"Appointment?{request.url.query}"
        patient = request.query_params.get("patient", "")
        entries = [
            {"resource": r} for k, r in self.resources.items()
            if k.startswith("Appointment/") and any(
                (p.get("actor") or {}).get("reference") == f"Patient/{patient}"
                for p in r.get("participant", []))
        ]
        return JSONResponse({"resourceType": "Bundle", "type": "searchset", "entry": entries},
                            media_type="application/fhir+json")

    # --- authorize -------------------------------------------------------------------------
    def issue_code(
        self,
        *,
        challenge: str,
        redirect_uri: str = REDIRECT_URI,
        scope: str = "launch openid fhirUser user/Appointment.rs",
        nonce: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> str:
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "challenge": challenge,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "nonce": nonce,
            "context": context or {},
        }
        return code

    async def authorize(self, request: Request) -> Response:
        self._hit("authorize")
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.form()).items()})
        assert params["tenant"] == "t1", "endpoint's own query parameter was dropped"
        assert params["response_type"] == "code" and params["client_id"] == CLIENT_ID
        assert params["aud"] == FHIR_BASE and params["code_challenge_method"] == "S256"
        assert params.get("launch") in self.launch_contexts, "unknown launch"
        self.requested_scopes.append(params["scope"])
        code = self.issue_code(
            challenge=params["code_challenge"],
            redirect_uri=params["redirect_uri"],
            scope=params["scope"],
            nonce=params.get("nonce"),
            context=dict(self.launch_contexts[params.get("launch")]),
        )
        query = urlencode({"code": code, "state": params["state"]})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)

    # --- token -----------------------------------------------------------------------------
    def make_id_token(
        self,
        claims: dict[str, Any],
        *,
        alg: str = "RS256",
        key: Any = None,
        kid: str | None = "ehr-1",
    ) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "sub": "user-1",
            "iat": now,
            "exp": now + 300,
            "fhirUser": f"{FHIR_BASE}/Practitioner/prac-1",
            **claims,
        }
        header = {"alg": alg, "typ": "JWT"} | ({"kid": kid} if kid else {})
        signer = key if key is not None else self.ehr_keys[0]
        return JsonWebToken([alg]).encode(header, body, signer).decode()

    def _verify_assertion(self, assertion: str) -> str:
        keys = JsonWebKey.import_key_set(self.client_jwks())
        claims = JsonWebToken(["RS384", "ES384"]).decode(
            assertion,
            keys,
            claims_options={
                "iss": {"essential": True},
                "sub": {"essential": True},
                "aud": {"essential": True, "value": TOKEN_URL},
                "exp": {"essential": True},
                "jti": {"essential": True},
            },
        )
        claims.validate(leeway=0)
        header = claims.header
        assert header.get("typ") == "JWT" and header.get("kid"), header
        assert claims["iss"] == claims["sub"], "iss must equal sub"
        assert claims["exp"] - time.time() <= 300, "exp more than 5 minutes ahead"
        if claims["jti"] in self.seen_jti:
            raise JoseError("jti replayed")
        self.seen_jti.add(claims["jti"])
        self.verified.append({"header": dict(header), "claims": dict(claims)})
        return str(claims["iss"])

    def _client(self, request: Request, form: dict[str, str]) -> tuple[str | None, str]:
        """Return (client_id or None, method) after checking the credentials."""
        if "client_assertion" in form:
            assert form["client_assertion_type"] == (
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            )
            try:
                return self._verify_assertion(form["client_assertion"]), "private_key_jwt"
            except (JoseError, ValueError, KeyError):
                return None, "private_key_jwt"
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            if self.basic_decoding == "form":
                user, password = unquote_plus(user), unquote_plus(password)
            ok = password == self.client_secret
            return (user if ok else None), "client_secret_basic"
        if "client_secret" in form:
            ok = form["client_secret"] == self.client_secret
            return (form.get("client_id") if ok else None), "client_secret_post"
        return form.get("client_id"), "none"

    @staticmethod
    def _error(status: int, error: str, description: str) -> Response:
        return JSONResponse({"error": error, "error_description": description}, status_code=status)

    async def token(self, request: Request) -> Response:
        self._hit("token")
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.last_form = form
        if self.next_answer is not None:
            status, body = self.next_answer
            self.next_answer = None
            if isinstance(body, str):
                return Response(body, status_code=status, media_type="text/html")
            return JSONResponse(body, status_code=status)
        client_id, method = self._client(request, form)
        if client_id != CLIENT_ID:
            return self._error(401, "invalid_client", "client authentication failed")
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return self._code_grant(form)
        if grant == "refresh_token":
            if self.refresh_tokens.pop(form.get("refresh_token", ""), None) is None:
                return self._error(400, "invalid_grant", "refresh token revoked")
            return self._tokens(scope=form.get("scope", "user/Appointment.rs"), context={})
        if grant == "client_credentials":
            if method != "private_key_jwt":
                return self._error(400, "unauthorized_client", "backend needs a JWT")
            return JSONResponse(
                {
                    "access_token": secrets.token_urlsafe(16),
                    "token_type": "bearer",
                    "expires_in": 300,
                    "scope": form["scope"],
                }
            )
        return self._error(400, "unsupported_grant_type", "unknown grant")

    def _code_grant(self, form: dict[str, str]) -> Response:
        entry = self.codes.pop(form.get("code", ""), None)
        if entry is None:
            return self._error(400, "invalid_grant", "authorization code expired")
        if entry["redirect_uri"] != form.get("redirect_uri"):
            return self._error(400, "invalid_grant", "redirect_uri mismatch")
        if s256(form.get("code_verifier", "")) != entry["challenge"]:
            return self._error(400, "invalid_grant", "PKCE verification failed")
        id_claims = dict(self.id_token_claims)
        if entry["nonce"]:
            id_claims.setdefault("nonce", entry["nonce"])
        return self._tokens(
            scope=entry["scope"],
            context=entry["context"],
            id_token=self.make_id_token(id_claims) if "openid" in entry["scope"] else None,
        )

    def _tokens(
        self, *, scope: str, context: dict[str, Any], id_token: str | None = None
    ) -> Response:
        refresh = secrets.token_urlsafe(16)
        self.refresh_tokens[refresh] = scope
        access = secrets.token_urlsafe(16)
        self._access_scopes[access] = scope
        body = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": "3600",
            "scope": scope,
            "refresh_token": refresh,
            "need_patient_banner": True,
            "smart_style_url": f"{HOST}/style.json",
            "tenant": "t1",
            "vendor_extra": {"x": 1},
            **context,
        }
        if id_token:
            body["id_token"] = id_token
        return Response(
            json.dumps(body), media_type="application/json", headers={"Cache-Control": "no-store"}
        )


_RESOURCE_SCOPE = re.compile(r"(patient|user)/(\*|[A-Z][A-Za-z]+)\.(read|\*|[cruds]+)")


def scope_allows(granted: str, *, resource_type: str, permission: str) -> bool:
    """Whether a granted scope string allows ``permission`` (r or s) on ``resource_type``.

    SMART v2 letters (``.rs``) and the v1 spellings (``.read`` and ``.*`` allow both r and s),
    written out independently of OpenVisit's scope code.
    """
    for scope in granted.split():
        match = _RESOURCE_SCOPE.fullmatch(scope)
        if match is None or match[2] not in ("*", resource_type):
            continue
        if match[3] in ("read", "*") or permission in match[3]:
            return True
    return False
