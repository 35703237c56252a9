"""The sandbox's own signing key: signs id_tokens, published as a JWK Set.

OpenID Connect Core §10.1: the issuer signs with a key the relying party fetches from
``jwks_uri``; the ``kid`` (an RFC 7638 thumbprint) lets clients pick it. The key persists in the
state directory so tokens and cached JWKS survive restarts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

ID_TOKEN_ALG = "RS256"


class ServerKey:
    """An RSA-2048 key pair; :meth:`sign` makes RS256 JWTs, :meth:`public_jwks` publishes it."""

    def __init__(self, key: RSAKey) -> None:
        self._key = key
        self.kid = key.thumbprint()

    @classmethod
    def load_or_create(cls, path: Path | None) -> ServerKey:
        """Load the PEM at ``path``; create it (mode 0600) when missing; fresh key when None."""
        if path is not None and path.exists():
            return cls(RSAKey.import_key(path.read_bytes()))
        key = RSAKey.generate_key(2048, private=True)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key.as_pem(private=True))
        return cls(key)

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set (RFC 7517 §5) with the public half only."""
        public = dict(self._key.as_dict(private=False))
        public.update({"kid": self.kid, "use": "sig", "alg": ID_TOKEN_ALG})
        return {"keys": [public]}

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact RS256 JWS of ``claims`` with this key's ``kid`` in the header."""
        return jwt.encode({"alg": ID_TOKEN_ALG, "kid": self.kid}, claims, self._key)
