"""Proof Key for Code Exchange, server side (RFC 7636).

SMART App Launch 2.x requires PKCE with ``S256`` and forbids ``plain``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

# RFC 7636 §4.1: 43-128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
# RFC 7636 §4.2: S256 challenge = BASE64URL(SHA256(verifier)) without padding = 43 chars.
_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


def is_valid_s256_challenge(challenge: str) -> bool:
    """True when ``challenge`` has the shape of an S256 code challenge."""
    return bool(_S256_CHALLENGE.fullmatch(challenge))


def s256(verifier: str) -> str:
    """BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def verify_s256(verifier: str, *, challenge: str) -> bool:
    """RFC 7636 §4.6: the verifier is well formed and hashes to the stored challenge."""
    if not _VERIFIER.fullmatch(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
