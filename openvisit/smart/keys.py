"""OpenVisit's own signing keys for ``private_key_jwt``, with rotation and a public JWKS.

Spec: SMART App Launch IG STU 2.2 §5.1.5 "Registering a SMART backend service" and
§5.1.6 (RS384 / ES384, the client publishes a JWKS, rotation by publishing the new key before
signing with it); RFC 7517 (JWK, JWK Set), RFC 7518 §3.1 (RS384: RSA ≥ 2048 bits; ES384:
P-384), RFC 7638 (thumbprints, used as the default ``kid``).

Contract: a :class:`KeySet` is immutable: :meth:`KeySet.with_new_key` and
:meth:`KeySet.without_key` return new sets. The *current* key signs; every other key is
still published in :meth:`KeySet.public_jwks` until removed, which gives EHRs that cache our
JWKS an overlap window. :meth:`KeySet.to_dict` holds the **private** keys as PEM: store it
encrypted. Bad keys raise :class:`~openvisit.smart.errors.ClientKeyError`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from openvisit.smart.errors import ClientKeyError

SigningAlg = Literal["RS384", "ES384"]
_FORMAT_VERSION = 1
_MIN_RSA_BITS = 2048


def _check_strength(private: object) -> SigningAlg:
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < _MIN_RSA_BITS:
            raise ClientKeyError(
                f"The RSA signing key has {private.key_size} bits; EHRs require at least "
                f"{_MIN_RSA_BITS}. Generate a new key in the admin portal."
            )
        return "RS384"
    if isinstance(private, ec.EllipticCurvePrivateKey):
        if private.curve.name != "secp384r1":
            raise ClientKeyError(
                f"The EC signing key uses curve {private.curve.name}; ES384 needs P-384. "
                "Generate a new key in the admin portal."
            )
        return "ES384"
    raise ClientKeyError("The signing key must be a private RSA or EC (P-384) key.")


@dataclass(frozen=True)
class SigningKey:
    """One private signing key with its ``kid``, algorithm and creation time (unix seconds)."""

    kid: str
    alg: SigningAlg
    created_at: int
    jwk: RSAKey | ECKey = field(repr=False, compare=False)

    @classmethod
    def generate(
        cls,
        *,
        alg: SigningAlg = "RS384",
        rsa_bits: int = 2048,
        kid: str | None = None,
        now: float | None = None,
    ) -> SigningKey:
        """Return a fresh key: RSA (``rsa_bits`` ≥ 2048) for RS384, P-384 for ES384."""
        if alg == "RS384":
            if rsa_bits < _MIN_RSA_BITS:
                raise ClientKeyError(f"RSA keys must have at least {_MIN_RSA_BITS} bits.")
            key: RSAKey | ECKey = RSAKey.generate_key(rsa_bits, private=True, auto_kid=False)
        elif alg == "ES384":
            key = ECKey.generate_key("P-384", private=True, auto_kid=False)
        else:
            raise ClientKeyError(f"Unsupported signing algorithm {alg!r}; use RS384 or ES384.")
        return cls._wrap(key, kid=kid, now=now)

    @classmethod
    def from_pem(
        cls, pem: str | bytes, *, kid: str | None = None, now: float | None = None
    ) -> SigningKey:
        """Import a PEM private key (PKCS#8 or traditional); the algorithm follows the key."""
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ClientKeyError(
                "The signing key is not a readable, unencrypted PEM private key."
            ) from None
        # Check strength before joserfc sees the key (it only warns about short RSA keys).
        _check_strength(private)
        if isinstance(private, rsa.RSAPrivateKey):
            key: RSAKey | ECKey = RSAKey.import_key(private)
        else:
            key = ECKey.import_key(cast(ec.EllipticCurvePrivateKey, private))
        return cls._wrap(key, kid=kid, now=now)

    @classmethod
    def _wrap(cls, key: RSAKey | ECKey, *, kid: str | None, now: float | None) -> SigningKey:
        alg = _check_strength(key.private_key)
        created = int(time.time() if now is None else now)
        return cls(kid=kid or key.thumbprint(), alg=alg, created_at=created, jwk=key)

    def public_jwk(self) -> dict[str, Any]:
        """Return the public JWK (with ``kid``, ``alg``, ``use=sig``), no private members."""
        public = dict(self.jwk.as_dict(private=False))
        public.pop("key_ops", None)
        public.update(kid=self.kid, alg=self.alg, use="sig")
        return public

    def private_pem(self) -> str:
        """Return the private key as unencrypted PKCS#8 PEM (callers must encrypt at rest)."""
        return self.jwk.as_pem(private=True).decode("ascii")

    def sign_jwt(self, claims: Mapping[str, Any], *, header: Mapping[str, Any]) -> str:
        """Return a compact JWS of ``claims`` with ``alg`` and ``kid`` set from this key."""
        full_header = {**header, "alg": self.alg, "kid": self.kid}
        return jwt.encode(full_header, dict(claims), self.jwk, algorithms=[self.alg])


class KeySet:
    """OpenVisit's signing keys: one current key that signs, older keys still published."""

    def __init__(self, keys: Sequence[SigningKey], *, current_kid: str | None = None) -> None:
        if not keys:
            raise ClientKeyError("A key set needs at least one signing key.")
        kids = [k.kid for k in keys]
        if len(set(kids)) != len(kids):
            raise ClientKeyError("Two signing keys share a kid; each kid must be unique.")
        self._keys: tuple[SigningKey, ...] = tuple(keys)
        self._current = current_kid if current_kid is not None else keys[-1].kid
        if self._current not in kids:
            raise ClientKeyError(f"The current kid {self._current!r} is not in the key set.")

    @classmethod
    def generate(
        cls,
        *,
        alg: SigningAlg = "RS384",
        rsa_bits: int = 2048,
        kid: str | None = None,
        now: float | None = None,
    ) -> KeySet:
        """Return a set holding one freshly generated current key."""
        return cls([SigningKey.generate(alg=alg, rsa_bits=rsa_bits, kid=kid, now=now)])

    def __iter__(self) -> Iterator[SigningKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet(current={self._current!r}, kids={self.kids!r})"

    @property
    def current(self) -> SigningKey:
        """The key that signs new assertions."""
        return self.get(self._current)

    @property
    def kids(self) -> list[str]:
        """All published kids, oldest first."""
        return [k.kid for k in self._keys]

    def get(self, kid: str) -> SigningKey:
        """Return the key with ``kid`` or raise ``ClientKeyError``."""
        for key in self._keys:
            if key.kid == kid:
                return key
        raise ClientKeyError(f"No signing key with kid {kid!r} in OpenVisit's key set.")

    def with_key(self, key: SigningKey, *, make_current: bool = True) -> KeySet:
        """Return a new set with ``key`` added (and current, unless told otherwise).

        Adding a key without making it current is the safe first step of a rotation for EHRs
        that cache JWKS: publish, wait for their cache to expire, then make it current.
        """
        return KeySet([*self._keys, key], current_kid=key.kid if make_current else self._current)

    def with_new_key(
        self, *, alg: SigningAlg | None = None, kid: str | None = None, now: float | None = None
    ) -> KeySet:
        """Return a new set where a freshly generated key is current; old keys stay published."""
        fresh = SigningKey.generate(alg=alg or self.current.alg, kid=kid, now=now)
        return self.with_key(fresh)

    def with_current(self, kid: str) -> KeySet:
        """Return a new set where the existing key ``kid`` signs."""
        self.get(kid)
        return KeySet(self._keys, current_kid=kid)

    def without_key(self, kid: str) -> KeySet:
        """Return a new set without ``kid`` (retire it); the current key cannot be retired."""
        self.get(kid)
        if kid == self._current:
            raise ClientKeyError(
                "The current signing key cannot be retired; rotate to a new key first."
            )
        return KeySet([k for k in self._keys if k.kid != kid], current_kid=self._current)

    def without_keys_older_than(self, *, cutoff: float) -> KeySet:
        """Return a new set without non-current keys created before ``cutoff`` (unix s)."""
        kept = [k for k in self._keys if k.kid == self._current or k.created_at >= cutoff]
        return KeySet(kept, current_kid=self._current)

    def public_jwks(self) -> dict[str, Any]:
        """Return the JWK Set to serve at ``/.well-known/jwks.json`` (public members only)."""
        return {"keys": [k.public_jwk() for k in self._keys]}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict with the **private** PEMs; encrypt it before storing."""
        return {
            "version": _FORMAT_VERSION,
            "current": self._current,
            "keys": [
                {"kid": k.kid, "alg": k.alg, "created_at": k.created_at, "pem": k.private_pem()}
                for k in self._keys
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeySet:
        """Rebuild a set written by :meth:`to_dict`; raise ``ClientKeyError`` if unusable."""
        if data.get("version") != _FORMAT_VERSION or not isinstance(data.get("keys"), list):
            raise ClientKeyError(
                "The stored signing key set is not in a format this OpenVisit understands."
            )
        keys = []
        for item in cast(list[Any], data["keys"]):
            if not isinstance(item, dict) or not isinstance(item.get("pem"), str):
                raise ClientKeyError("A stored signing key has no PEM.")
            key = SigningKey.from_pem(item["pem"], kid=item.get("kid"), now=item.get("created_at"))
            if item.get("alg") not in (None, key.alg):
                raise ClientKeyError(f"Stored key {key.kid!r} does not match its algorithm.")
            keys.append(key)
        current = data.get("current")
        return cls(keys, current_kid=current if isinstance(current, str) else None)
