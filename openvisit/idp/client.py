"""OpenID Connect authorization-code sign-in with PKCE against the organisation's IdP.

The code exchange reuses the SMART core's RFC 6749 token request (an IdP's token endpoint is
the same protocol); the id_token is validated by :func:`openvisit.smart.idtoken.validate_id_token`
(the same rules as for EHRs: signature from the IdP's JWKS, ``iss``, ``aud``, ``exp``,
``nonce``; JOSE by joserfc, the Authlib project's JOSE library). OpenID Connect Core 1.0 §3.1.
Authlib's own httpx integration is not used: importing it raises a deprecation warning that
our warnings-as-errors policy turns into a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from openvisit.config import Settings
from openvisit.errors import ConfigurationError, NotAuthenticated, OutboundError
from openvisit.smart.client_auth import ClientAuth, ClientSecretBasic, PublicClient
from openvisit.smart.discovery import SmartConfiguration
from openvisit.smart.idtoken import IdTokenClaims, JwksCache, validate_id_token
from openvisit.smart.pkce import Pkce
from openvisit.smart.state import new_nonce, new_state
from openvisit.smart.token import exchange_code

if TYPE_CHECKING:
    from openvisit.context import AppContext


@dataclass(frozen=True)
class IdpStart:
    url: str
    state: str
    nonce: str
    code_verifier: str


def idp_client(app: AppContext) -> IdpClient:
    """This process's client of the organisation IdP (discovery and JWKS cached)."""
    client = app.services.idp
    if client is None:
        client = app.services.idp = IdpClient(app.settings)
    return client


class IdpClient:
    """One organisation IdP; discovery and JWKS cached for the life of the process."""

    def __init__(self, settings: Settings) -> None:
        if not (settings.oidc_issuer and settings.oidc_client_id):
            raise ConfigurationError(
                "No organisation identity provider is configured: set OPENVISIT_OIDC_ISSUER, "
                "OPENVISIT_OIDC_CLIENT_ID and OPENVISIT_OIDC_CLIENT_SECRET."
            )
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.client_secret = settings.oidc_client_secret
        self._config: SmartConfiguration | None = None
        self._jwks = JwksCache()

    async def configuration(self, http: httpx.AsyncClient) -> SmartConfiguration:
        if self._config is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            try:
                response = await http.get(url)
            except httpx.HTTPError as exc:
                raise OutboundError(
                    f"The organisation's identity provider at {self.issuer} cannot be reached "
                    f"({type(exc).__name__})."
                ) from exc
            if response.status_code != 200:
                raise OutboundError(
                    f"The identity provider's discovery document answered "
                    f"HTTP {response.status_code}; check OPENVISIT_OIDC_ISSUER."
                )
            document: dict[str, Any] = response.json()
            self._config = SmartConfiguration.from_document(document, source=url)
        return self._config

    def _auth(self) -> ClientAuth:
        if self.client_secret:
            return ClientSecretBasic(self.client_id, secret=self.client_secret)
        return PublicClient(self.client_id)

    async def start(self, http: httpx.AsyncClient, *, redirect_uri: str) -> IdpStart:
        """The IdP authorization URL plus the state, nonce and PKCE verifier to keep."""
        config = await self.configuration(http)
        pkce = Pkce.new()
        state, nonce = new_state(), new_nonce()
        endpoint = config.require_authorization_endpoint()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid",
                "state": state,
                "nonce": nonce,
                "code_challenge": pkce.challenge,
                "code_challenge_method": "S256",
            }
        )
        url = f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
        return IdpStart(url=url, state=state, nonce=nonce, code_verifier=pkce.verifier)

    async def finish(
        self,
        http: httpx.AsyncClient,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        nonce: str,
    ) -> IdTokenClaims:
        """Exchange the code and validate the id_token; returns its claims.

        Raises :class:`NotAuthenticated` when the IdP refuses the code or the id_token is bad.
        """
        config = await self.configuration(http)
        try:
            token = await exchange_code(
                http,
                config=config,
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=code_verifier,
                auth=self._auth(),
            )
        except OutboundError as exc:
            raise NotAuthenticated(
                f"The identity provider did not accept the sign-in: {exc.message} Please try again."
            ) from exc
        id_token = token.id_token
        if not isinstance(id_token, str):
            raise NotAuthenticated("The identity provider returned no id_token.")
        return await validate_id_token(
            http,
            id_token=id_token,
            config=config,
            client_id=self.client_id,
            jwks_cache=self._jwks,
            nonce=nonce,
        )
