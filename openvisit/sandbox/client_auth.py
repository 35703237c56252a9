"""Client authentication at the token endpoint.

Methods (RFC 8414 names): ``client_secret_basic`` and ``client_secret_post`` (RFC 6749 §2.3.1),
``private_key_jwt`` (RFC 7523 §2.2 and §3, profiled by SMART App Launch 2.2 "Client
Authentication: Asymmetric" and "Backend Services": ``alg`` RS384 or ES384, ``iss`` = ``sub`` =
client id, ``aud`` = the token URL, ``exp`` at most five minutes ahead, a ``jti`` never seen
before) and ``none`` for public clients. A request using more than one method is refused
(RFC 6749 §2.3).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from openvisit.sandbox.clients import ClientRegistry, SandboxClient
from openvisit.sandbox.errors import OAuthError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# RS384 and ES384 are what SMART requires servers to support; RS256 is accepted for
# clients built on libraries whose default it is (Authlib's PrivateKeyJWT, for one).
ASSERTION_ALGS = ("RS384", "ES384", "RS256")
MAX_ASSERTION_LIFETIME_S = 300
CLOCK_SKEW_S = 30

JwksFetcher = Callable[[str], Awaitable[Mapping[str, Any]]]
JtiRecorder = Callable[[str, str, datetime], bool]


@dataclass(frozen=True)
class AuthenticatedClient:
    client: SandboxClient
    method: str


#: Like real EHRs, the sandbox caches a client's JWKS (and refetches on an unknown key).
JWKS_TTL_SECONDS = 300.0


class CachedJwks:
    """A :data:`JwksFetcher` that GETs a client's JWK Set and keeps it for
    :data:`JWKS_TTL_SECONDS`; one per sandbox (its ``jwks_fetcher``)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, Mapping[str, Any]]] = {}

    async def __call__(self, url: str, *, fresh: bool = False) -> Mapping[str, Any]:
        """The JWK Set at ``url`` (cached unless ``fresh``); raises ``invalid_client`` when
        it cannot be had."""
        cached = self._cache.get(url)
        if cached is not None and not fresh and time.monotonic() - cached[0] < JWKS_TTL_SECONDS:
            return cached[1]
        data = await _fetch_jwks(url)
        self._cache[url] = (time.monotonic(), data)
        return data


async def _fetch_jwks(url: str) -> Mapping[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as http:
            response = await http.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OAuthError("invalid_client", f"cannot fetch the client's jwks_uri: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise OAuthError("invalid_client", "the client's jwks_uri is not a JWK Set")
    return data


async def authenticate_client(
    *,
    form: Mapping[str, str],
    authorization: str | None,
    registry: ClientRegistry,
    token_url: str,
    now: datetime,
    jwks_fetcher: JwksFetcher,
    remember_jti: JtiRecorder,
) -> AuthenticatedClient:
    """Identify and authenticate the client of a token request.

    Returns the registration and the method used. Raises :class:`OAuthError`
    ``invalid_client`` (401) for unknown clients or bad credentials, ``invalid_request`` for
    malformed or mixed methods.
    """
    basic = _parse_basic(authorization)
    assertion = form.get("client_assertion")
    used = [
        m
        for m, present in (
            ("client_secret_basic", basic is not None),
            ("private_key_jwt", assertion is not None or "client_assertion_type" in form),
            ("client_secret_post", "client_secret" in form),
        )
        if present
    ]
    if len(used) > 1:
        raise OAuthError("invalid_request", "use exactly one client authentication method")
    method = used[0] if used else "none"

    if method == "client_secret_basic":
        assert basic is not None
        client_id, secret = basic
        client = _known(registry, client_id, form)
        _check_secret(client, secret, method)
    elif method == "client_secret_post":
        client = _known(registry, form.get("client_id", ""), form)
        _check_secret(client, form["client_secret"], method)
    elif method == "private_key_jwt":
        if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
            raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        client = _known(registry, _unverified_issuer(assertion), form)
        if "private_key_jwt" not in client.auth_methods:
            raise OAuthError("invalid_client", "client is not registered for private_key_jwt")
        keys = client.jwks if client.jwks is not None else None
        if keys is None:
            assert client.jwks_uri is not None
            keys = await jwks_fetcher(client.jwks_uri)
        try:
            verify_client_assertion(
                assertion, client=client, jwks=keys, token_url=token_url, now=now,
                remember_jti=remember_jti,
            )
        except OAuthError:
            if client.jwks_uri is None or not isinstance(jwks_fetcher, CachedJwks):
                raise
            # The client may have rotated its key since we cached its JWKS: fetch once more.
            keys = await jwks_fetcher(client.jwks_uri, fresh=True)
            verify_client_assertion(
                assertion, client=client, jwks=keys, token_url=token_url, now=now,
                remember_jti=remember_jti,
            )
    else:
        client = _known(registry, form.get("client_id", ""), form)
        if client.confidential:
            raise OAuthError("invalid_client", "confidential client must authenticate")
    return AuthenticatedClient(client=client, method=method)


def verify_client_assertion(
    assertion: str,
    *,
    client: SandboxClient,
    jwks: Mapping[str, Any],
    token_url: str,
    now: datetime,
    remember_jti: JtiRecorder,
) -> None:
    """Check a private_key_jwt assertion (RFC 7523 §3, SMART Backend Services §"Protocol
    details"). Raises ``invalid_client`` with the reason."""
    header = _unverified(assertion)[0]
    if header.get("alg") not in ASSERTION_ALGS:
        raise OAuthError(
            "invalid_client", f"assertion alg must be one of {', '.join(ASSERTION_ALGS)}"
        )
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_uri:
        raise OAuthError("invalid_client", "assertion jku is not the registered jwks_uri")
    try:
        keys = jwks.get("keys")
        key_set = KeySet.import_key_set({"keys": keys if isinstance(keys, list) else []})
        if "kid" in header:
            token = jwt.decode(assertion, key_set, algorithms=list(ASSERTION_ALGS))
        else:
            token = _decode_without_kid(assertion, key_set)
    except (JoseError, ValueError, TypeError) as exc:
        raise OAuthError("invalid_client", f"assertion signature does not verify: {exc}") from exc
    claims = token.claims
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise OAuthError("invalid_client", "assertion iss and sub must both be the client_id")
    aud = claims.get("aud")
    if not (aud == token_url or (isinstance(aud, list) and token_url in aud)):
        raise OAuthError("invalid_client", f"assertion aud must be the token URL {token_url}")
    now_ts = int(now.timestamp())
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise OAuthError("invalid_client", "assertion exp is missing")
    if exp <= now_ts - CLOCK_SKEW_S:
        raise OAuthError("invalid_client", "assertion has expired")
    if exp > now_ts + MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S:
        raise OAuthError("invalid_client", "assertion exp must be at most 5 minutes ahead")
    for claim in ("nbf", "iat"):
        value = claims.get(claim)
        if isinstance(value, int | float) and value > now_ts + CLOCK_SKEW_S:
            raise OAuthError("invalid_client", f"assertion {claim} is in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise OAuthError("invalid_client", "assertion jti is missing")
    if not remember_jti(client.client_id, jti, datetime.fromtimestamp(exp, UTC)):
        raise OAuthError("invalid_client", "assertion jti was already used")


def _decode_without_kid(assertion: str, key_set: KeySet) -> jwt.Token:
    # SMART asks for a kid; without one, try each key (a one-key JWKS is common).
    last: Exception = ValueError("no usable key in the client's JWK Set")
    for key in key_set.keys:
        try:
            return jwt.decode(assertion, key, algorithms=list(ASSERTION_ALGS))
        except (JoseError, ValueError, TypeError) as exc:
            last = exc
    raise last


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        obj = jws.extract_compact(assertion.encode("ascii"))
        claims = json.loads(obj.payload or b"")
    except (JoseError, ValueError, UnicodeError) as exc:
        raise OAuthError("invalid_client", "client_assertion is not a JWT") from exc
    if not isinstance(claims, dict):
        raise OAuthError("invalid_client", "client_assertion is not a JWT")
    return dict(obj.headers()), claims


def _unverified_issuer(assertion: str) -> str:
    issuer = _unverified(assertion)[1].get("iss")
    if not isinstance(issuer, str):
        raise OAuthError("invalid_client", "assertion iss is missing")
    return issuer


def _known(registry: ClientRegistry, client_id: str, form: Mapping[str, str]) -> SandboxClient:
    if "client_id" in form and form["client_id"] != client_id:
        raise OAuthError("invalid_client", "client_id does not match the authenticated client")
    client = registry.get(client_id) if client_id else None
    if client is None:
        raise OAuthError("invalid_client", "unknown client")
    return client


def _check_secret(client: SandboxClient, secret: str, method: str) -> None:
    if method not in client.auth_methods or client.client_secret is None:
        raise OAuthError("invalid_client", f"client is not registered for {method}")
    expected = client.client_secret.encode()
    # RFC 6749 §2.3.1 wants the credentials form-encoded inside Basic; many clients skip
    # that, so accept either spelling.
    candidates = {secret, unquote_plus(secret)}
    if not any(hmac.compare_digest(c.encode(), expected) for c in candidates):
        raise OAuthError("invalid_client", "client authentication failed")


def _parse_basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_client", "malformed Basic credentials") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError("invalid_client", "malformed Basic credentials")
    return unquote_plus(client_id), secret
