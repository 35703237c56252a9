"""``state`` and ``nonce`` values for the authorization request.

Spec: SMART App Launch IG STU 2.2 §2.0.8.3 (``state`` with at least 122 bits of entropy),
RFC 6749 §10.12 (CSRF protection via ``state``), OpenID Connect Core 1.0 §3.1.2.1 and
§15.5.2 (``nonce`` binds the id_token to the browser session).

Contract: :func:`new_state` and :func:`new_nonce` return URL-safe strings carrying 256 bits;
:func:`values_match` compares in constant time and is false for a missing value.
"""

from __future__ import annotations

import hmac
import secrets


def new_state() -> str:
    """Return a fresh ``state`` value (256 bits, 43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def new_nonce() -> str:
    """Return a fresh OpenID Connect ``nonce`` value (256 bits, 43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def values_match(expected: str, received: str | None) -> bool:
    """Return whether ``received`` equals ``expected``, compared in constant time."""
    if not expected or received is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), received.encode("utf-8"))
