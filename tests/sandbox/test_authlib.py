"""The sandbox's authorisation server driven by Authlib as a confidential client:
private_key_jwt (RFC 7523, SMART asymmetric auth) with RS384 and ES384, client_secret_basic,
refresh rotation and SMART Backend Services (client_credentials)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .conftest import SECRET, Keys
from .flows import follow_authorize, provider_launch
from .helpers import AUTHORIZE_URL, BASE, FHIR, REDIRECT, TOKEN_URL, serve

SCOPE = (
    "launch openid fhirUser offline_access user/Appointment.rs user/Patient.rs user/Encounter.rus"
)


class SmartPrivateKeyJWT(PrivateKeyJWT):  # type: ignore[misc]
    """Authlib's PrivateKeyJWT with SMART's ≤ 5 min assertion life and a fresh jti per call
    (left alone, Authlib signs for an hour and reuses the jti of a claims dict it was given)."""

    def sign(self, auth: Any, token_endpoint: str) -> Any:
        self.claims = {"exp": int(time.time()) + 240}
        return super().sign(auth, token_endpoint)


def oauth_client(
    app: Any, *, client_id: str, secret: Any, method: Any = None, **kwargs: Any
) -> AsyncOAuth2Client:
    client = AsyncOAuth2Client(
        client_id=client_id,
        client_secret=secret,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        transport=httpx.ASGITransport(app),
        base_url=BASE,
        token_endpoint_auth_method=method.name if method is not None else None,
        **kwargs,
    )
    if method is not None:
        client.register_client_auth_method(method)
    return client


async def launch_and_fetch(
    http: httpx.AsyncClient, oauth: AsyncOAuth2Client, *, scope: str = SCOPE, nonce: str = ""
) -> dict[str, Any]:
    """EHR launch from the schedule, authorize through the page, code exchange by Authlib."""
    launch = await provider_launch(http, practitioner="prac-1", appointment="appt-4")
    verifier = generate_token(48)
    extra = {"nonce": nonce} if nonce else {}
    url, _state = oauth.create_authorization_url(
        AUTHORIZE_URL, code_verifier=verifier, scope=scope, aud=FHIR, launch=launch, **extra
    )
    result = await follow_authorize(http, url)
    token: dict[str, Any] = await oauth.fetch_token(
        TOKEN_URL, authorization_response=f"{REDIRECT}?{urlencode(result)}", code_verifier=verifier
    )
    return token


async def test_it_launches_with_private_key_jwt_and_a_verifiable_id_token(
    app: Any, http: httpx.AsyncClient, keys: Keys
) -> None:
    method = SmartPrivateKeyJWT(TOKEN_URL, alg="RS384", headers={"kid": "rsa-1"})
    async with oauth_client(app, client_id="ov-jwt", secret=keys.rsa, method=method) as oauth:
        token = await launch_and_fetch(http, oauth, nonce="n-0S6_WzA2Mj")
        assert (token["patient"], token["encounter"]) == ("pat-4", "enc-4")
        assert token["fhirContext"] == [{"reference": "Appointment/appt-4"}]

        config = (await http.get("/fhir/.well-known/smart-configuration")).json()
        jwks = (await http.get(config["jwks_uri"])).json()
        id_token = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
        claims = id_token.claims
        assert claims["iss"] == FHIR and claims["aud"] == "ov-jwt"
        assert claims["fhirUser"] == f"{FHIR}/Practitioner/prac-1"
        assert claims["sub"] == "Practitioner/prac-1" and claims["nonce"] == "n-0S6_WzA2Mj"
        assert claims["iat"] <= time.time() < claims["exp"]

        appointment = await oauth.get("/fhir/Appointment/appt-4")
        assert appointment.status_code == 200
        assert appointment.headers["content-type"].startswith("application/fhir+json")


async def test_it_accepts_es384_assertions(app: Any, http: httpx.AsyncClient, keys: Keys) -> None:
    method = SmartPrivateKeyJWT(TOKEN_URL, alg="ES384", headers={"kid": "ec-1"})
    async with oauth_client(app, client_id="ov-jwt", secret=keys.ec, method=method) as oauth:
        token = await launch_and_fetch(http, oauth, scope="launch openid fhirUser user/Patient.rs")
        assert token["patient"] == "pat-4" and "refresh_token" not in token


async def test_it_rotates_refresh_tokens_for_client_secret_basic(
    app: Any, http: httpx.AsyncClient
) -> None:
    async with oauth_client(app, client_id="ov-secret", secret=SECRET) as oauth:
        first = await launch_and_fetch(http, oauth)
        second = await oauth.refresh_token(TOKEN_URL)
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert second["patient"] == "pat-4"  # the launch context survives a refresh

        narrower = await oauth.refresh_token(TOKEN_URL, scope="user/Patient.rs")
        assert narrower["scope"] == "user/Patient.rs"
        narrow_headers = {"Authorization": f"Bearer {narrower['access_token']}"}
        assert (
            await http.get("/fhir/Appointment/appt-4", headers=narrow_headers)
        ).status_code == 403
        with pytest.raises(OAuthError) as wider:
            await oauth.refresh_token(TOKEN_URL, scope="user/Observation.rs")
        assert wider.value.error == "invalid_scope"
        again = await oauth.refresh_token(TOKEN_URL)  # a refused refresh did not burn the token
        assert again["scope"] == SCOPE

        with pytest.raises(OAuthError) as replay:
            await oauth.refresh_token(TOKEN_URL, refresh_token=first["refresh_token"])
        assert replay.value.error == "invalid_grant"
        # Replaying a rotated token revokes the whole family (RFC 9700 §4.14.2).
        assert (await http.get("/fhir/Patient/pat-4", headers=narrow_headers)).status_code == 401


async def test_it_serves_backend_services_with_short_system_tokens(
    app: Any, http: httpx.AsyncClient, keys: Keys
) -> None:
    method = SmartPrivateKeyJWT(TOKEN_URL, alg="RS384", headers={"kid": "rsa-1"})
    async with oauth_client(app, client_id="ov-backend", secret=keys.rsa, method=method) as oauth:
        token = await oauth.fetch_token(
            TOKEN_URL,
            grant_type="client_credentials",
            scope="system/AuditEvent.c system/Appointment.rs system/Patient.rs",
        )
        assert token["scope"] == "system/AuditEvent.c system/Appointment.rs"
        assert token["expires_in"] <= 300
        assert not {"refresh_token", "id_token", "patient"} & set(token)
        event = {
            "resourceType": "AuditEvent",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114"},
            "action": "E",
            "recorded": "2024-05-06T10:00:00Z",
            "outcome": "0",
            "agent": [{"who": {"reference": "Patient/pat-4"}, "requestor": False}],
            "source": {"observer": {"display": "OpenVisit"}},
            "entity": [{"what": {"reference": "Appointment/appt-4"}}],
        }
        created = await oauth.post(
            "/fhir/AuditEvent", json=event, headers={"Content-Type": "application/fhir+json"}
        )
        assert created.status_code == 201, created.text
        assert (await oauth.get("/fhir/Patient/pat-4")).status_code == 403

    async with oauth_client(app, client_id="ov-secret", secret=SECRET) as oauth:
        with pytest.raises(OAuthError) as refused:
            await oauth.fetch_token(
                TOKEN_URL, grant_type="client_credentials", scope="system/Appointment.rs"
            )
        assert refused.value.error == "unauthorized_client"


async def _backend_error(app: Any, keys: Keys, method: Any, *, key: Any = None) -> str:
    async with oauth_client(
        app, client_id="ov-backend", secret=key or keys.rsa, method=method
    ) as oauth:
        with pytest.raises(OAuthError) as refused:
            await oauth.fetch_token(
                TOKEN_URL, grant_type="client_credentials", scope="system/Appointment.rs"
            )
    assert refused.value.error == "invalid_client"
    return str(refused.value.description)


async def test_it_refuses_a_replayed_jti(app: Any, keys: Keys) -> None:
    # Given a claims dict, Authlib adds one jti to it and reuses it on every call.
    method = PrivateKeyJWT(
        TOKEN_URL, alg="RS384", headers={"kid": "rsa-1"}, claims={"exp": int(time.time()) + 240}
    )
    async with oauth_client(app, client_id="ov-backend", secret=keys.rsa, method=method) as oauth:
        await oauth.fetch_token(
            TOKEN_URL, grant_type="client_credentials", scope="system/Appointment.rs"
        )
        with pytest.raises(OAuthError) as replay:
            await oauth.fetch_token(
                TOKEN_URL, grant_type="client_credentials", scope="system/Appointment.rs"
            )
    assert "jti" in str(replay.value.description)


async def test_it_refuses_bad_assertions(app: Any, keys: Keys) -> None:
    wrong_aud = SmartPrivateKeyJWT(f"{BASE}/oauth2/token", alg="RS384", headers={"kid": "rsa-1"})
    assert "aud" in await _backend_error(app, keys, wrong_aud)
    # Authlib's default assertion lives an hour; SMART allows five minutes.
    long_lived = PrivateKeyJWT(TOKEN_URL, alg="RS384", headers={"kid": "rsa-1"})
    assert "5 minutes" in await _backend_error(app, keys, long_lived)
    stranger = RSAKey.generate_key(2048, private=True)
    forged = SmartPrivateKeyJWT(TOKEN_URL, alg="RS384", headers={"kid": "rsa-1"})
    assert "signature" in await _backend_error(app, keys, forged, key=stranger)
    weak_alg = SmartPrivateKeyJWT(TOKEN_URL, alg="RS512", headers={"kid": "rsa-1"})
    assert "alg" in await _backend_error(app, keys, weak_alg)


async def test_it_fetches_keys_from_a_registered_jwks_uri(
    app: Any, http: httpx.AsyncClient, keys: Keys
) -> None:
    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(keys.jwks())

    with serve(lambda base: Starlette(routes=[Route("/jwks.json", jwks)])) as (jwks_base, _):
        registered = await http.post(
            "/admin/clients",
            json={
                "client_id": "ov-jwks-uri",
                "jwks_uri": f"{jwks_base}/jwks.json",
                "scopes": ["system/Appointment.rs"],
            },
        )
        assert registered.status_code == 201, registered.text
        method = SmartPrivateKeyJWT(TOKEN_URL, alg="ES384", headers={"kid": "ec-1"})
        async with oauth_client(
            app, client_id="ov-jwks-uri", secret=keys.ec, method=method
        ) as oauth:
            token = await oauth.fetch_token(
                TOKEN_URL, grant_type="client_credentials", scope="system/Appointment.rs"
            )
    assert token["scope"] == "system/Appointment.rs"
