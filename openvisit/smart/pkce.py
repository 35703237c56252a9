"""PKCE for the authorization code flow (RFC 7636), S256 only.

Spec: RFC 7636 §4.1 (``code_verifier``: 43–128 characters of ``[A-Za-z0-9-._~]``), §4.2
(``S256``: ``BASE64URL(SHA256(ASCII(code_verifier)))`` without padding), §7.1 (≥256 bits of
entropy recommended); SMART App Launch IG STU 2.2 §2.0.8 requires S256 and forbids ``plain``.

Contract: :func:`new_code_verifier` returns a fresh verifier; :func:`code_challenge_s256`
returns its challenge or raises :class:`~openvisit.errors.InvalidInput` for a malformed verifier.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field

from openvisit.errors import InvalidInput

_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def new_code_verifier(*, nbytes: int = 32) -> str:
    """Return a code_verifier carrying ``nbytes`` random bytes (32 → 256 bits, 43 chars)."""
    if not 32 <= nbytes <= 96:
        raise InvalidInput("nbytes must be 32–96 so the verifier is 43–128 characters long.")
    return secrets.token_urlsafe(nbytes)


def code_challenge_s256(verifier: str) -> str:
    """Return the S256 code_challenge of ``verifier`` (RFC 7636 §4.2)."""
    if not _VERIFIER.fullmatch(verifier):
        raise InvalidInput(
            "The PKCE code_verifier must be 43–128 characters of A–Z, a–z, 0–9, '-', '.', '_' "
            "or '~' (RFC 7636 §4.1)."
        )
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Pkce:
    """A verifier (kept server-side until the token exchange) and its S256 challenge."""

    verifier: str = field(repr=False)
    challenge: str
    method: str = "S256"

    @classmethod
    def new(cls) -> Pkce:
        """Return a fresh pair with a 256-bit verifier."""
        verifier = new_code_verifier()
        return cls(verifier=verifier, challenge=code_challenge_s256(verifier))
