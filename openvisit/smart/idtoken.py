"""Validation of the OpenID Connect id_token returned with a SMART launch, and ``fhirUser``.

Spec: OpenID Connect Core 1.0 §3.1.3.7 "ID Token Validation" (signature with the issuer's
keys, ``iss``, ``aud`` / ``azp``, ``exp``, ``iat``, ``nonce``) and §10.1.1 (refetch the JWKS
when an unknown ``kid`` appears); RFC 7515 / RFC 7517 / RFC 7518 (JWS, JWK, algorithms);
RFC 8725 §3.1–3.2 (never ``none``, never HMAC with a public key); SMART App Launch IG
STU 2.2 §2.0.9 "Scopes for requesting identity data" (``fhirUser``; SMART 1.0 servers used
``profile``).

Contract: :func:`validate_id_token` returns :class:`IdTokenClaims` or raises
:class:`~openvisit.smart.errors.IdTokenInvalid` (the user must sign in again);
:class:`~openvisit.smart.errors.SmartDiscoveryError` when the EHR's keys cannot be fetched.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet as JoseKeySet
from joserfc.jwk import KeySetSerialization

from openvisit.errors import InvalidInput
from openvisit.smart._http import describe_url, is_retryable_status, json_object, send
from openvisit.smart.discovery import SmartConfiguration
from openvisit.smart.errors import EhrCapabilityMissing, IdTokenInvalid, SmartDiscoveryError
from openvisit.smart.state import values_match

#: Asymmetric algorithms accepted for id_tokens; ``none`` and ``HS*`` are never accepted.
ID_TOKEN_ALGS = ("RS256", "RS384", "ES256", "ES384")
DEFAULT_LEEWAY = 120
_MAX_TOKEN_LENGTH = 16_384


async def fetch_jwks(client: httpx.AsyncClient, *, jwks_uri: str) -> JoseKeySet:
    """Fetch the EHR's JWK Set; keys marked ``use: enc`` or of unknown type are skipped.

    Raises ``SmartDiscoveryError`` (retryable for network faults, 429 and 5xx).
    """
    what = "signing keys (JWKS)"
    response = await send(
        client,
        method="GET",
        url=jwks_uri,
        what=what,
        error_cls=SmartDiscoveryError,
        headers={"Accept": "application/json"},
        follow_redirects=True,
    )
    if response.status_code != 200:
        raise SmartDiscoveryError(
            f"The EHR answered HTTP {response.status_code} for its signing keys at "
            f"{describe_url(jwks_uri)}; check jwks_uri in its SMART configuration.",
            permanent=not is_retryable_status(response.status_code),
        )
    body = json_object(response, what=what, error_cls=SmartDiscoveryError)
    keys = body.get("keys")
    if not isinstance(keys, list):
        keys = []
    usable = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"]
    try:
        return JoseKeySet.import_key_set(cast(KeySetSerialization, {"keys": usable}))
    except (JoseError, ValueError, TypeError, KeyError):
        raise SmartDiscoveryError(
            f"The EHR's JWKS at {describe_url(jwks_uri)} holds no usable signing key.",
            permanent=True,
        ) from None


@dataclass
class _Entry:
    fetched_at: float
    keys: JoseKeySet


class JwksCache:
    """Caches EHR key sets per ``jwks_uri`` for ``ttl_seconds``.

    A forced refetch (unknown ``kid``) happens at most once per ``refetch_cooldown_seconds``
    per URI, so tokens with made-up kids cannot make OpenVisit hammer the EHR.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float = 3600.0,
        refetch_cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.refetch_cooldown_seconds = refetch_cooldown_seconds
        #: How many times a key set was fetched (round trips to the issuer).
        self.fetches = 0
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _usable(self, entry: _Entry | None, *, force: bool) -> bool:
        if entry is None:
            return False
        age = self._clock() - entry.fetched_at
        return age < (self.refetch_cooldown_seconds if force else self.ttl_seconds)

    async def get(
        self, client: httpx.AsyncClient, *, jwks_uri: str, force: bool = False
    ) -> JoseKeySet:
        """Return the cached key set, fetching when absent, stale, or forced (see above)."""
        entry = self._entries.get(jwks_uri)
        if self._usable(entry, force=force):
            return cast(_Entry, entry).keys
        async with self._locks.setdefault(jwks_uri, asyncio.Lock()):
            entry = self._entries.get(jwks_uri)
            if self._usable(entry, force=force):
                return cast(_Entry, entry).keys
            keys = await fetch_jwks(client, jwks_uri=jwks_uri)
            self.fetches += 1
            self._entries[jwks_uri] = _Entry(fetched_at=self._clock(), keys=keys)
            return keys


@dataclass(frozen=True)
class IdTokenClaims:
    """A validated id_token: who signed in, and every claim (kept out of ``repr``: may be PHI)."""

    subject: str
    issuer: str
    fhir_user: str | None
    claims: Mapping[str, Any] = field(repr=False)


def _invalid(reason: str) -> IdTokenInvalid:
    return IdTokenInvalid(
        f"The EHR's sign-in token was rejected: {reason}. Start again from the EHR; if this "
        "keeps happening, check the client id and FHIR base configured for this environment."
    )


def _header(id_token: str) -> dict[str, Any]:
    segments = id_token.split(".")
    if len(id_token) > _MAX_TOKEN_LENGTH or len(segments) != 3:
        raise _invalid("it is not a signed JWT")
    try:
        raw = base64.urlsafe_b64decode(segments[0] + "=" * (-len(segments[0]) % 4))
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("its header is unreadable") from None
    if not isinstance(header, dict):
        raise _invalid("its header is unreadable")
    return header


async def _key_for(client: httpx.AsyncClient, *, cache: JwksCache, jwks_uri: str, kid: Any) -> Any:
    for attempt in range(2):
        keys = await cache.get(client, jwks_uri=jwks_uri, force=attempt == 1)
        try:
            if kid is None:
                if len(keys.keys) == 1:
                    return keys.keys[0]
                raise _invalid("it names no key (kid) and the EHR publishes several")
            return keys.get_by_kid(str(kid))
        except JoseError:
            continue  # unknown kid: the EHR may have rotated its keys; refetch once
    raise _invalid("it was signed with a key the EHR does not publish (unknown kid)")


def _check_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str | None,
    now: float,
    leeway: int,
) -> None:
    if claims.get("iss") != issuer:
        raise _invalid("it was issued by a different server than this EHR (iss)")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in audiences:
        raise _invalid("it was issued for another application (aud)")
    if "azp" in claims and claims["azp"] != client_id:
        raise _invalid("it was issued for another application (azp)")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise _invalid("it has no expiry (exp)")
    if now > exp + leeway:
        raise _invalid("it has expired; the sign-in took too long or the clocks disagree")
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise _invalid("it has no issue time (iat)")
    if iat > now + leeway:
        raise _invalid("it claims to be issued in the future; check the server clocks")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + leeway:
        raise _invalid("it is not valid yet (nbf); check the server clocks")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise _invalid("it names no subject (sub)")
    if nonce is not None and not values_match(nonce, claims.get("nonce")):
        raise _invalid("it belongs to a different sign-in attempt (nonce)")


async def validate_id_token(
    client: httpx.AsyncClient,
    *,
    id_token: str,
    config: SmartConfiguration,
    client_id: str,
    jwks_cache: JwksCache,
    nonce: str | None = None,
    now: float | None = None,
    leeway_seconds: int = DEFAULT_LEEWAY,
) -> IdTokenClaims:
    """Validate ``id_token`` against the EHR's ``issuer`` and ``jwks_uri`` and return its claims.

    Checks, in order: algorithm in :data:`ID_TOKEN_ALGS`, signature (refetching the JWKS once
    for an unknown ``kid``), ``iss``, ``aud``/``azp`` = ``client_id``, ``exp`` and ``iat``
    within ``leeway_seconds``, ``sub``, and ``nonce`` when given.
    """
    if not config.issuer or not config.jwks_uri:
        raise EhrCapabilityMissing(
            "The EHR's SMART configuration lacks issuer or jwks_uri, so OpenVisit cannot check "
            "who signed in. Ask the EHR analyst to enable OpenID Connect (sso-openid-connect)."
        )
    header = _header(id_token)
    alg = header.get("alg")
    if alg not in ID_TOKEN_ALGS:
        shown = alg if isinstance(alg, str) and len(alg) <= 10 else "an unknown algorithm"
        raise _invalid(f"it is signed with {shown}, which OpenVisit never accepts")
    key = await _key_for(client, cache=jwks_cache, jwks_uri=config.jwks_uri, kid=header.get("kid"))
    try:
        token = jwt.decode(id_token, key, algorithms=[alg])
    except (JoseError, ValueError, TypeError):
        raise _invalid("its signature does not verify with the EHR's published keys") from None
    claims = dict(token.claims)
    _check_claims(
        claims,
        issuer=config.issuer,
        client_id=client_id,
        nonce=nonce,
        now=time.time() if now is None else now,
        leeway=leeway_seconds,
    )
    fhir_user = claims.get("fhirUser") or claims.get("profile")
    return IdTokenClaims(
        subject=claims["sub"],
        issuer=config.issuer,
        fhir_user=fhir_user if isinstance(fhir_user, str) else None,
        claims=claims,
    )


class FhirUser(NamedTuple):
    """A parsed ``fhirUser``: resource type, logical id and the absolute URL."""

    resource_type: str
    id: str
    url: str


_USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Person")
_FHIR_USER = re.compile(
    r"(?:(?P<base>.*)/)?(?P<type>[A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?"
)


def parse_fhir_user(value: str, *, fhir_base: str | None = None) -> FhirUser:
    """Parse ``fhirUser`` (absolute, or relative when ``fhir_base`` is given or unknown).

    ``parse_fhir_user("https://ehr/fhir/Practitioner/123")`` →
    ``FhirUser("Practitioner", "123", "https://ehr/fhir/Practitioner/123")``. A relative value
    is made absolute against ``fhir_base`` when given. Raises ``InvalidInput`` when the value is
    not a reference to Practitioner, PractitionerRole, Patient, RelatedPerson or Person.
    """
    match = _FHIR_USER.fullmatch(value.strip())
    if match is None or match["type"] not in _USER_TYPES:
        raise InvalidInput(
            "The EHR's fhirUser claim is not a reference to a Practitioner, Patient, "
            "RelatedPerson or Person; ask the EHR analyst to check the fhirUser scope set-up."
        )
    base = match["base"]
    if base and urlsplit(base).scheme not in ("https", "http"):
        raise InvalidInput("The EHR's fhirUser claim is neither relative nor an absolute URL.")
    relative = f"{match['type']}/{match['id']}"
    if base:
        url = f"{base}/{relative}"
    elif fhir_base:
        url = f"{fhir_base.rstrip('/')}/{relative}"
    else:
        url = relative
    return FhirUser(match["type"], match["id"], url)
