"""SMART discovery: ``.well-known/smart-configuration`` and the FHIR ``/metadata`` check.

Spec: SMART App Launch IG STU 2.2 §2.0.6 "Conformance" (Using .well-known), capability sets
§2.0.8; RFC 7636 §4.3 (``code_challenge_methods_supported``); FHIR R4 CapabilityStatement
(``GET [base]/metadata``, http://hl7.org/fhir/R4/http.html#capabilities).

Contract: :func:`fetch_smart_configuration` returns a :class:`SmartConfiguration` or raises
:class:`~openvisit.smart.errors.SmartDiscoveryError` (retryable for network faults and 5xx);
:meth:`SmartConfiguration.require` raises :class:`~openvisit.smart.errors.EhrCapabilityMissing`
listing every missing feature at once, so the config portal can show them together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openvisit.smart._http import describe_url, is_retryable_status, json_object, send
from openvisit.smart.errors import EhrCapabilityMissing, SmartDiscoveryError

AuthMethod = Literal["private_key_jwt", "client_secret_basic", "client_secret_post", "none"]
LaunchStyle = Literal["ehr", "standalone"]

#: Signing algorithms OpenVisit's client assertions use (SMART STU 2.2 §5.1.3 "Backend services").
CLIENT_ASSERTION_ALGS = ("RS384", "ES384")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _is_https_or_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)


class SmartConfiguration(BaseModel):
    """The EHR's ``.well-known/smart-configuration`` (SMART STU 2.2 §2.0.6.3); extra fields kept.

    ``token_endpoint`` is required by the spec and by this model; everything else is optional
    here and checked by :meth:`problems` / :meth:`require` against what a launch needs.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    issuer: str | None = None
    jwks_uri: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str
    grant_types_supported: list[str] = Field(default_factory=list)
    scopes_supported: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    code_challenge_methods_supported: list[str] = Field(default_factory=list)
    token_endpoint_auth_methods_supported: list[str] = Field(default_factory=list)
    token_endpoint_auth_signing_alg_values_supported: list[str] = Field(default_factory=list)

    @classmethod
    def from_document(cls, document: dict[str, Any], *, source: str) -> SmartConfiguration:
        """Parse a discovery document; raise ``EhrCapabilityMissing`` naming the bad fields."""
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "document"
                if err["type"] == "missing":
                    problems.append(f"no {field}")
                else:
                    problems.append(f"{field} is malformed ({err['msg']})")
            raise EhrCapabilityMissing(
                f"The EHR's SMART configuration at {describe_url(source)} is unusable: "
                f"{'; '.join(problems)}. Check that the FHIR base URL is the EHR's SMART-enabled "
                "R4 base (Epic: …/api/FHIR/R4; Oracle Health: …/r4/<tenant id>).",
                problems=problems,
            ) from None

    def supports(self, capability: str) -> bool:
        """Return whether ``capability`` (e.g. ``authorize-post``) is advertised."""
        return capability in self.capabilities

    def supports_pkce_s256(self) -> bool:
        """Return whether the EHR advertises PKCE with S256 (RFC 7636 §4.2)."""
        return "S256" in self.code_challenge_methods_supported

    def require_authorization_endpoint(self) -> str:
        """Return the authorization endpoint or raise ``EhrCapabilityMissing``."""
        if not self.authorization_endpoint:
            raise EhrCapabilityMissing(
                "The EHR's SMART configuration has no authorization_endpoint, so users cannot "
                "sign in through it. Check the FHIR base URL; backend-only servers cannot be "
                "used for EHR or standalone launch."
            )
        return self.authorization_endpoint

    def problems(
        self,
        *,
        launch_styles: Iterable[LaunchStyle] = ("ehr",),
        auth_method: AuthMethod = "private_key_jwt",
        openid: bool = True,
    ) -> list[str]:
        """Return human-readable reasons this EHR cannot serve the given launch set-up.

        An empty list means the configuration is usable. Checks: endpoints present and HTTPS
        (loopback exempt), PKCE S256, launch capabilities, the client authentication method
        and its signing algorithms, and ``issuer`` + ``jwks_uri`` when ``openid`` is wanted.
        """
        found: list[str] = []
        styles = list(launch_styles)
        if styles and not self.authorization_endpoint:
            found.append("no authorization_endpoint")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            url = getattr(self, name)
            if url and not _is_https_or_loopback(url):
                found.append(f"{name} is not an https:// URL")
        if styles and not self.supports_pkce_s256():
            found.append(
                "the EHR does not support PKCE S256 (code_challenge_methods_supported is "
                f"{self.code_challenge_methods_supported or 'empty'})"
            )
        for style in styles:
            if not self.supports(f"launch-{style}"):
                found.append(f"the EHR does not advertise the launch-{style} capability")
        found.extend(self._auth_problems(auth_method))
        if openid:
            if not self.supports("sso-openid-connect"):
                found.append("the EHR does not advertise sso-openid-connect (needed for fhirUser)")
            if not self.issuer:
                found.append("no issuer (needed to check the id_token)")
            if not self.jwks_uri:
                found.append("no jwks_uri (needed to check the id_token signature)")
        return found

    def _auth_problems(self, auth_method: AuthMethod) -> list[str]:
        methods = self.token_endpoint_auth_methods_supported
        if auth_method == "none":
            return (
                []
                if self.supports("client-public")
                else ["the EHR does not advertise client-public (public clients)"]
            )
        if auth_method == "private_key_jwt":
            found = []
            # token_endpoint_auth_methods_supported is only RECOMMENDED (STU 2.2 §2.0.6.3);
            # when absent, the capability is the EHR's statement of support.
            if methods and "private_key_jwt" not in methods:
                found.append("the EHR does not accept private_key_jwt client authentication")
            elif not methods and not self.supports("client-confidential-asymmetric"):
                found.append("the EHR does not advertise client-confidential-asymmetric")
            algs = self.token_endpoint_auth_signing_alg_values_supported
            if algs and not set(algs) & set(CLIENT_ASSERTION_ALGS):
                found.append(
                    f"the EHR accepts client assertions signed with {', '.join(algs)}, "
                    "but OpenVisit signs with RS384 or ES384"
                )
            return found
        if methods and auth_method not in methods:
            return [f"the EHR does not accept {auth_method} client authentication"]
        return []

    def require(
        self,
        *,
        launch_styles: Iterable[LaunchStyle] = ("ehr",),
        auth_method: AuthMethod = "private_key_jwt",
        openid: bool = True,
    ) -> None:
        """Raise ``EhrCapabilityMissing`` listing every item of :meth:`problems`, if any."""
        found = self.problems(launch_styles=launch_styles, auth_method=auth_method, openid=openid)
        if found:
            raise EhrCapabilityMissing(
                "This EHR cannot be used as configured: " + "; ".join(found) + ". Ask the EHR "
                "analyst to enable these features for OpenVisit's client, or change the "
                "endpoint's settings.",
                problems=found,
            )


def smart_configuration_url(fhir_base: str) -> str:
    """Return ``{fhir_base}/.well-known/smart-configuration`` (no doubled slash)."""
    return fhir_base.rstrip("/") + "/.well-known/smart-configuration"


async def fetch_smart_configuration(
    client: httpx.AsyncClient, *, fhir_base: str
) -> SmartConfiguration:
    """Fetch and parse the EHR's SMART configuration for ``fhir_base``.

    Raises ``SmartDiscoveryError`` (``permanent=False`` for network faults, 429 and 5xx) or
    ``EhrCapabilityMissing`` when the document lacks required fields.
    """
    url = smart_configuration_url(fhir_base)
    what = "SMART configuration"
    response = await send(
        client,
        method="GET",
        url=url,
        what=what,
        error_cls=SmartDiscoveryError,
        headers={"Accept": "application/json"},
        follow_redirects=True,
    )
    if response.status_code != 200:
        hint = (
            " The FHIR base URL is probably wrong or not SMART-enabled (it should end with the "
            "R4 suffix, e.g. …/api/FHIR/R4)."
            if response.status_code in (401, 403, 404)
            else ""
        )
        raise SmartDiscoveryError(
            f"The EHR answered HTTP {response.status_code} for its SMART configuration at "
            f"{describe_url(url)}.{hint}",
            permanent=not is_retryable_status(response.status_code),
        )
    document = json_object(response, what=what, error_cls=SmartDiscoveryError)
    return SmartConfiguration.from_document(document, source=url)


class DiscoveryCache:
    """Caches :class:`SmartConfiguration` per FHIR base for ``ttl_seconds``.

    Concurrent callers for the same base share one fetch; failures are not cached. ``clock``
    returns seconds (monotonic by default) and is injectable for tests.
    """

    def __init__(
        self, *, ttl_seconds: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: dict[str, tuple[float, SmartConfiguration]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @staticmethod
    def _key(fhir_base: str) -> str:
        return fhir_base.rstrip("/")

    async def get(self, client: httpx.AsyncClient, *, fhir_base: str) -> SmartConfiguration:
        """Return the cached configuration or fetch it (see :func:`fetch_smart_configuration`)."""
        key = self._key(fhir_base)
        cached = self._fresh(key)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._fresh(key)  # another task may have fetched while we waited
            if cached is not None:
                return cached
            config = await fetch_smart_configuration(client, fhir_base=key)
            self._entries[key] = (self._clock() + self.ttl_seconds, config)
            return config

    def _fresh(self, key: str) -> SmartConfiguration | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        return None

    def invalidate(self, fhir_base: str | None = None) -> None:
        """Forget one FHIR base, or everything when ``fhir_base`` is ``None``."""
        if fhir_base is None:
            self._entries.clear()
        else:
            self._entries.pop(self._key(fhir_base), None)


_FHIR_RELEASES = {"1.0": "DSTU2", "3.0": "STU3", "4.0": "R4", "4.3": "R4B", "5.0": "R5"}


@dataclass(frozen=True)
class CapabilitySummary:
    """What OpenVisit keeps from a CapabilityStatement: version, software, resource types."""

    fhir_version: str
    software_name: str | None
    software_version: str | None
    resource_types: frozenset[str]


async def fetch_capability_statement(
    client: httpx.AsyncClient, *, fhir_base: str
) -> CapabilitySummary:
    """Fetch ``{fhir_base}/metadata`` and check it is a FHIR R4 (4.0.x) CapabilityStatement.

    Raises ``SmartDiscoveryError``: retryable when unreachable or 5xx; permanent when the answer
    is not JSON, not a CapabilityStatement, or another FHIR version (the message names it).
    """
    url = fhir_base.rstrip("/") + "/metadata"
    what = "FHIR CapabilityStatement"
    response = await send(
        client,
        method="GET",
        url=url,
        what=what,
        error_cls=SmartDiscoveryError,
        headers={"Accept": "application/fhir+json"},
        follow_redirects=True,
    )
    if response.status_code != 200:
        raise SmartDiscoveryError(
            f"The EHR answered HTTP {response.status_code} for {describe_url(url)}; a FHIR "
            "server answers /metadata without sign-in. Check the FHIR base URL.",
            permanent=not is_retryable_status(response.status_code),
        )
    body = json_object(response, what=what, error_cls=SmartDiscoveryError)
    resource_type = body.get("resourceType")
    if resource_type != "CapabilityStatement":
        got = f"a FHIR {resource_type}" if isinstance(resource_type, str) else "no FHIR resource"
        raise SmartDiscoveryError(
            f"{describe_url(url)} returned {got}, not a CapabilityStatement. The URL is "
            "probably not a FHIR base (Conformance means DSTU2; use the R4 base).",
            permanent=True,
        )
    version = body.get("fhirVersion")
    if not isinstance(version, str) or not version.startswith("4.0."):
        release = _FHIR_RELEASES.get(str(version)[:3], "an unknown version")
        raise SmartDiscoveryError(
            f"The FHIR server at {describe_url(fhir_base)} speaks FHIR {version} ({release}); "
            "OpenVisit needs FHIR R4 (4.0.x). Use the EHR's R4 base URL (Epic: …/api/FHIR/R4).",
            permanent=True,
        )
    software_value = body.get("software")
    software: dict[str, Any] = software_value if isinstance(software_value, dict) else {}
    types: set[str] = set()
    for rest in body.get("rest") or []:
        if isinstance(rest, dict) and rest.get("mode", "server") == "server":
            types.update(
                r["type"]
                for r in rest.get("resource") or []
                if isinstance(r, dict) and isinstance(r.get("type"), str)
            )
    name, ver = software.get("name"), software.get("version")
    return CapabilitySummary(
        fhir_version=version,
        software_name=name if isinstance(name, str) else None,
        software_version=ver if isinstance(ver, str) else None,
        resource_types=frozenset(types),
    )
