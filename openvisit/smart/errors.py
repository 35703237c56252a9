"""Errors raised by the SMART client protocol core.

Every class subclasses :mod:`openvisit.errors`, so the web layer and the workers treat them
like any other OpenVisit error. Contract for every message: it says what went wrong and what a
person can do about it, and it never contains a token, a secret, a code or PHI (names, patient
data). EHR-supplied text is passed through :func:`safe_ehr_text` before it is quoted.
"""

from __future__ import annotations

import re
from typing import Any

from openvisit.errors import (
    ConfigurationError,
    Gone,
    InvalidInput,
    NotAuthenticated,
    OutboundError,
    PermissionDenied,
)

# Long opaque runs (codes, tokens, JWT segments) that an EHR might echo back in an
# error_description; quoting them would leak a credential into logs and screens.
_OPAQUE_RUN = re.compile(r"[A-Za-z0-9._~+/=-]{24,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def safe_ehr_text(text: object, *, limit: int = 160) -> str:
    """Return EHR-supplied text made safe to quote in a message.

    Control characters are collapsed, long opaque runs (possible tokens) are replaced by
    ``[redacted]`` and the result is cut to ``limit`` characters.
    """
    cleaned = _CONTROL.sub(" ", str(text)).strip()
    cleaned = _OPAQUE_RUN.sub("[redacted]", cleaned)
    cleaned = re.sub(r"\s+", " ", cleaned)
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned


class SmartDiscoveryError(OutboundError):
    """The EHR's discovery documents (smart-configuration, /metadata, JWKS) are unusable.

    ``permanent=False`` for timeouts, unreachable hosts and 5xx answers; ``True`` when the
    EHR answered with something OpenVisit cannot use (wrong URL, wrong FHIR version …).
    """

    code = "smart_discovery_error"


class EhrCapabilityMissing(SmartDiscoveryError):
    """The EHR answered, but lacks something OpenVisit needs (PKCE S256, a token endpoint …)."""

    code = "ehr_capability_missing"

    def __init__(self, message: str, *, problems: list[str] | None = None, **kw: Any) -> None:
        kw.setdefault("permanent", True)
        details = dict(kw.pop("details", None) or {})
        details["problems"] = list(problems or [message])
        super().__init__(message, details=details, **kw)
        self.problems: list[str] = details["problems"]


class SmartTokenError(OutboundError):
    """The EHR's token endpoint refused or failed a token request (RFC 6749 §5.2).

    ``ehr_error`` holds the EHR's ``error`` code (e.g. ``invalid_grant``) or ``None`` when the
    failure was not an OAuth error answer. 5xx, 429 and timeouts are ``permanent=False``.
    """

    code = "smart_token_error"

    def __init__(self, message: str, *, ehr_error: str | None = None, **kw: Any) -> None:
        details = dict(kw.pop("details", None) or {})
        if ehr_error is not None:
            details["ehr_error"] = ehr_error
        super().__init__(message, details=details, **kw)
        self.ehr_error = ehr_error


class SmartAuthorizeError(PermissionDenied):
    """The authorization response (the redirect back from the EHR) is an error or forged."""

    code = "smart_authorize_error"

    def __init__(self, message: str, *, ehr_error: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.ehr_error = ehr_error


class IdTokenInvalid(NotAuthenticated):
    """An OpenID Connect id_token failed validation; the user must sign in again."""

    code = "id_token_invalid"


class LaunchContextMissing(InvalidInput):
    """The token response names no appointment, encounter or patient to start a visit for."""

    code = "launch_context_missing"


class ClientKeyError(ConfigurationError):
    """OpenVisit's own signing keys are missing, weak or unreadable; an operator must act."""

    code = "client_key_error"


class EpicLinkInvalid(InvalidInput):
    """An Epic encrypted context link could not be decrypted or read."""

    code = "epic_link_invalid"


class EpicLinkExpired(Gone):
    """An Epic encrypted context link is older than its ``LinkValidityPeriod``."""

    code = "epic_link_expired"
