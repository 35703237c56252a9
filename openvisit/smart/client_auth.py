"""Client authentication at the EHR's token endpoint.

Spec: SMART App Launch IG STU 2.2 §2.0.10 "Confidential clients" and §5.1.3 (asymmetric
``private_key_jwt``: header ``alg`` RS384/ES384, ``kid``, ``typ=JWT``, optional ``jku``;
claims ``iss`` = ``sub`` = client_id, ``aud`` = token URL, ``exp`` at most five minutes
ahead, unique ``jti``); RFC 7523 §2.2 and §3 (JWT client assertions); RFC 7521 §4.2
(``client_assertion_type`` / ``client_assertion``); RFC 6749 §2.3.1 (``client_secret_basic``
and ``client_secret_post``); OpenID Connect Core 1.0 §9 (method names).

Contract: every :class:`ClientAuth` returns, for one token request, the extra form fields and
headers to send (:class:`AuthParts`); each call to :class:`PrivateKeyJwt` makes a new assertion
with a fresh ``jti``. Secrets never appear in ``repr``.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol
from urllib.parse import quote_plus

from openvisit.errors import ConfigurationError
from openvisit.smart.discovery import AuthMethod
from openvisit.smart.keys import KeySet, SigningAlg, SigningKey

__all__ = [
    "CLIENT_ASSERTION_TYPE",
    "AuthParts",
    "ClientAuth",
    "ClientSecretBasic",
    "ClientSecretPost",
    "KeySet",
    "PrivateKeyJwt",
    "PublicClient",
    "SigningAlg",
    "SigningKey",
    "changed_by_form_encoding",
    "client_auth_for",
    "make_client_assertion",
]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: SMART STU 2.2 §5.1.3: ``exp`` no more than five minutes in the future.
MAX_ASSERTION_LIFETIME = 300
#: Kept below the maximum so an EHR whose clock runs a little behind still accepts it.
DEFAULT_ASSERTION_LIFETIME = 240


def make_client_assertion(
    keys: KeySet,
    *,
    client_id: str,
    token_url: str,
    now: float | None = None,
    lifetime_seconds: int = DEFAULT_ASSERTION_LIFETIME,
    jku: str | None = None,
) -> str:
    """Return a signed client assertion JWT for one request to ``token_url``.

    Signed by ``keys.current``; ``jti`` is 256 random bits. Raises ``ConfigurationError`` when
    ``lifetime_seconds`` is outside 1–300.
    """
    if not 0 < lifetime_seconds <= MAX_ASSERTION_LIFETIME:
        raise ConfigurationError(
            f"Client assertions must expire within {MAX_ASSERTION_LIFETIME} seconds."
        )
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": issued,
        "exp": issued + lifetime_seconds,
        "jti": secrets.token_urlsafe(32),
    }
    header: dict[str, Any] = {"typ": "JWT"}
    if jku is not None:
        header["jku"] = jku
    return keys.current.sign_jwt(claims, header=header)


@dataclass(frozen=True)
class AuthParts:
    """Form fields and headers a client authentication method adds to a token request."""

    form: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class ClientAuth(Protocol):
    """How OpenVisit proves its identity to a token endpoint."""

    @property
    def client_id(self) -> str:
        """The client id registered with the EHR."""
        ...

    @property
    def method(self) -> AuthMethod:
        """The method's name in ``token_endpoint_auth_methods_supported``."""
        ...

    def parts(self, *, token_url: str) -> AuthParts:
        """Return what to add to one request to ``token_url``."""
        ...


@dataclass(frozen=True)
class PrivateKeyJwt:
    """``private_key_jwt``: a fresh RS384/ES384 assertion per request (asymmetric client)."""

    client_id: str
    _: KW_ONLY
    keys: KeySet = field(repr=False)
    jku: str | None = None
    lifetime_seconds: int = DEFAULT_ASSERTION_LIFETIME
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    @property
    def method(self) -> AuthMethod:
        """Always ``private_key_jwt``."""
        return "private_key_jwt"

    def parts(self, *, token_url: str) -> AuthParts:
        """Return ``client_assertion_type`` and a new ``client_assertion`` (RFC 7521 §4.2)."""
        assertion = make_client_assertion(
            self.keys,
            client_id=self.client_id,
            token_url=token_url,
            now=self.clock(),
            lifetime_seconds=self.lifetime_seconds,
            jku=self.jku,
        )
        return AuthParts(
            form={"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion}
        )


def changed_by_form_encoding(value: str) -> bool:
    """Whether RFC 6749 §2.3.1's form-encoding changes ``value`` (``+``, ``/``, ``=``, ``:``,
    ``%``, spaces, non-ASCII…): then a server that does not form-decode the Basic header reads
    a different secret than the one it issued."""
    return quote_plus(value) != value


@dataclass(frozen=True)
class ClientSecretBasic:
    """``client_secret_basic``: HTTP Basic with the client id and secret (RFC 6749 §2.3.1).

    RFC 6749 §2.3.1 has both halves ``application/x-www-form-urlencoded`` before base64
    (``form_encode=True``, the default), and a conforming server decodes them. Many servers
    do not decode (they read RFC 7617's plain ``id:secret``), so a secret with ``+``, ``/`` or
    ``=`` fails there: ``form_encode=False`` sends id and secret as they are. A client id
    containing ``:`` cannot be sent raw (it would split the pair); it stays encoded.
    """

    client_id: str
    _: KW_ONLY
    secret: str = field(repr=False)
    form_encode: bool = True

    @property
    def method(self) -> AuthMethod:
        """Always ``client_secret_basic``."""
        return "client_secret_basic"

    def parts(self, *, token_url: str) -> AuthParts:
        """Return the ``Authorization: Basic`` header; the form is unchanged."""
        if self.form_encode:
            user, password = quote_plus(self.client_id), quote_plus(self.secret)
        else:
            # RFC 7617 §2: a user-id with ":" cannot travel raw; only the id stays encoded.
            user = quote_plus(self.client_id) if ":" in self.client_id else self.client_id
            password = self.secret
        pair = f"{user}:{password}".encode()
        return AuthParts(headers={"Authorization": "Basic " + base64.b64encode(pair).decode()})


@dataclass(frozen=True)
class ClientSecretPost:
    """``client_secret_post``: ``client_id`` and ``client_secret`` in the form body."""

    client_id: str
    _: KW_ONLY
    secret: str = field(repr=False)

    @property
    def method(self) -> AuthMethod:
        """Always ``client_secret_post``."""
        return "client_secret_post"

    def parts(self, *, token_url: str) -> AuthParts:
        """Return ``client_id`` and ``client_secret`` form fields."""
        return AuthParts(form={"client_id": self.client_id, "client_secret": self.secret})


@dataclass(frozen=True)
class PublicClient:
    """No client authentication: a public client sends only its ``client_id``."""

    client_id: str

    @property
    def method(self) -> AuthMethod:
        """Always ``none``."""
        return "none"

    def parts(self, *, token_url: str) -> AuthParts:
        """Return the ``client_id`` form field."""
        return AuthParts(form={"client_id": self.client_id})


def client_auth_for(
    method: AuthMethod,
    *,
    client_id: str,
    secret: str | None = None,
    keys: KeySet | None = None,
    jku: str | None = None,
    basic_form_encoded: bool = True,
) -> ClientAuth:
    """Return the :class:`ClientAuth` for an endpoint's configured method.

    ``basic_form_encoded=False`` sends ``client_secret_basic`` credentials unencoded (see
    :class:`ClientSecretBasic`). Raises ``ConfigurationError`` when the secret or key set that
    method needs is missing.
    """
    if method == "private_key_jwt":
        if keys is None:
            raise ConfigurationError("private_key_jwt needs OpenVisit's signing key set.")
        return PrivateKeyJwt(client_id, keys=keys, jku=jku)
    if method in ("client_secret_basic", "client_secret_post"):
        if not secret:
            raise ConfigurationError(
                f"{method} needs the client secret the EHR issued; enter it for this endpoint."
            )
        if method == "client_secret_basic":
            return ClientSecretBasic(client_id, secret=secret, form_encode=basic_form_encoded)
        return ClientSecretPost(client_id, secret=secret)
    return PublicClient(client_id)
