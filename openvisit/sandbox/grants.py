"""Short-lived authorisation state: launches, pending requests, codes, tokens, assertion ids.

Kept in memory on purpose: a sandbox restart signs everybody out, like a real EHR restart
would. Every value is an unguessable ``secrets.token_urlsafe(32)`` (256 bits). Token
"families" tie every token that came from one authorization code together, so that a replayed
code (RFC 6749 §4.1.2) or a replayed rotated refresh token (OAuth 2.0 Security BCP, RFC 9700
§4.14.2) revokes the whole family.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from openvisit.sandbox.errors import OAuthError

LaunchKind = Literal["provider", "patient"]


@dataclass(frozen=True, kw_only=True)
class LaunchContext:
    """What the EHR bound to an opaque ``launch`` id (SMART App Launch 2.2 §"EHR launch")."""

    launch_id: str
    kind: LaunchKind
    user: str  # "Practitioner/<id>" or "Patient/<id>"
    patient: str
    encounter: str | None
    appointment: str | None
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class TokenContext:
    """Who and what a code or token speaks for; copied into every token of the family."""

    client_id: str
    scopes: tuple[str, ...]
    user: str | None = None
    patient: str | None = None
    encounter: str | None = None
    appointment: str | None = None
    nonce: str | None = None
    need_patient_banner: bool = True
    auth_time: int | None = None


@dataclass(frozen=True, kw_only=True)
class PendingAuthorization:
    """A validated authorize request waiting for the user to pick who they are."""

    request_id: str
    client_id: str
    redirect_uri: str
    state: str
    scopes: tuple[str, ...]
    code_challenge: str
    nonce: str | None
    launch: LaunchContext | None
    expires_at: datetime


@dataclass(kw_only=True)
class AuthorizationCode:
    code: str
    context: TokenContext
    redirect_uri: str
    code_challenge: str
    expires_at: datetime
    family: str
    used: bool = False


@dataclass(frozen=True, kw_only=True)
class IssuedToken:
    """An access or refresh token record."""

    token: str
    context: TokenContext
    expires_at: datetime
    family: str


@dataclass
class _Families:
    revoked: set[str] = field(default_factory=set)


def new_secret() -> str:
    """256 bits from the OS CSPRNG, URL-safe."""
    return secrets.token_urlsafe(32)


class GrantStore:
    """Thread-safe in-memory store of everything the authorisation server hands out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._launches: dict[str, LaunchContext] = {}
        self._pending: dict[str, PendingAuthorization] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._access: dict[str, IssuedToken] = {}
        self._refresh: dict[str, IssuedToken] = {}
        self._rotated_refresh: dict[str, str] = {}  # old refresh token -> family
        self._families = _Families()
        self._jti: dict[tuple[str, str], datetime] = {}

    # -- launches ---------------------------------------------------------------------------

    def mint_launch(
        self,
        *,
        kind: LaunchKind,
        user: str,
        patient: str,
        encounter: str | None,
        appointment: str | None,
        expires_at: datetime,
    ) -> LaunchContext:
        """Mint an opaque launch id bound to the given context; reusable until it expires."""
        launch = LaunchContext(
            launch_id=new_secret(),
            kind=kind,
            user=user,
            patient=patient,
            encounter=encounter,
            appointment=appointment,
            expires_at=expires_at,
        )
        with self._lock:
            self._launches[launch.launch_id] = launch
        return launch

    def get_launch(self, launch_id: str, *, now: datetime) -> LaunchContext | None:
        """The launch context, or None when unknown or expired."""
        with self._lock:
            launch = self._launches.get(launch_id)
        return launch if launch is not None and launch.expires_at > now else None

    # -- pending authorize requests ---------------------------------------------------------

    def put_pending(self, pending: PendingAuthorization) -> None:
        with self._lock:
            self._pending[pending.request_id] = pending

    def take_pending(self, request_id: str, *, now: datetime) -> PendingAuthorization | None:
        """Remove and return the pending request (a decision is made once), or None."""
        with self._lock:
            pending = self._pending.pop(request_id, None)
        return pending if pending is not None and pending.expires_at > now else None

    def peek_pending(self, request_id: str, *, now: datetime) -> PendingAuthorization | None:
        with self._lock:
            pending = self._pending.get(request_id)
        return pending if pending is not None and pending.expires_at > now else None

    # -- authorization codes ----------------------------------------------------------------

    def issue_code(
        self, *, context: TokenContext, redirect_uri: str, code_challenge: str, expires_at: datetime
    ) -> AuthorizationCode:
        code = AuthorizationCode(
            code=new_secret(),
            context=context,
            redirect_uri=redirect_uri,
            code_challenge=code_challenge,
            expires_at=expires_at,
            family=new_secret(),
        )
        with self._lock:
            self._codes[code.code] = code
        return code

    def consume_code(self, code: str, *, client_id: str, now: datetime) -> AuthorizationCode:
        """Use a code once. Raises ``invalid_grant`` when unknown, expired, used or not this
        client's; a second use also revokes every token the first use produced (RFC 6749
        §4.1.2)."""
        with self._lock:
            record = self._codes.get(code)
            if record is None or record.context.client_id != client_id:
                raise OAuthError("invalid_grant", "authorization code is unknown")
            if record.used:
                self._families.revoked.add(record.family)
                raise OAuthError("invalid_grant", "authorization code was already used")
            record.used = True
            if record.expires_at <= now:
                raise OAuthError("invalid_grant", "authorization code has expired")
            return record

    # -- access and refresh tokens ----------------------------------------------------------

    def issue_access(
        self, *, context: TokenContext, expires_at: datetime, family: str
    ) -> IssuedToken:
        token = IssuedToken(
            token=new_secret(), context=context, expires_at=expires_at, family=family
        )
        with self._lock:
            self._access[token.token] = token
        return token

    def get_access(self, token: str, *, now: datetime) -> IssuedToken | None:
        """The live access token record, or None (unknown, expired or family revoked)."""
        with self._lock:
            record = self._access.get(token)
            if record is None or record.family in self._families.revoked:
                return None
        return record if record.expires_at > now else None

    def issue_refresh(
        self, *, context: TokenContext, expires_at: datetime, family: str
    ) -> IssuedToken:
        token = IssuedToken(
            token=new_secret(), context=context, expires_at=expires_at, family=family
        )
        with self._lock:
            self._refresh[token.token] = token
        return token

    def rotate_refresh(
        self,
        token: str,
        *,
        client_id: str,
        now: datetime,
        check: Callable[[IssuedToken], None] = lambda _record: None,
    ) -> IssuedToken:
        """Retire a refresh token and return its record so a successor can be issued.

        Raises ``invalid_grant`` when unknown, expired, revoked or another client's; replaying
        an already rotated token revokes its family. ``check`` may raise to refuse the request
        before the token is retired (a refused refresh leaves the token usable).
        """
        with self._lock:
            if token in self._rotated_refresh:
                self._families.revoked.add(self._rotated_refresh[token])
                raise OAuthError("invalid_grant", "refresh token was already used")
            record = self._refresh.get(token)
            if record is None or record.context.client_id != client_id:
                raise OAuthError("invalid_grant", "refresh token is unknown")
            if record.family in self._families.revoked or record.expires_at <= now:
                raise OAuthError("invalid_grant", "refresh token has expired or was revoked")
            check(record)
            del self._refresh[token]
            self._rotated_refresh[token] = record.family
            return record

    # -- client assertion replay protection -------------------------------------------------

    def remember_jti(
        self, *, client_id: str, jti: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Record an assertion ``jti``; False when it was seen before (RFC 7523 §3, item 7)."""
        with self._lock:
            self._prune(now)
            key = (client_id, jti)
            if key in self._jti:
                return False
            self._jti[key] = expires_at
            return True

    def _prune(self, now: datetime) -> None:
        # Called with the lock held; keeps memory bounded on a long-running sandbox.
        for jti_key in [k for k, exp in self._jti.items() if exp <= now]:
            del self._jti[jti_key]
        for lid in [k for k, v in self._launches.items() if v.expires_at <= now]:
            del self._launches[lid]
        for rid in [k for k, v in self._pending.items() if v.expires_at <= now]:
            del self._pending[rid]
        for tok in [k for k, v in self._access.items() if v.expires_at <= now]:
            del self._access[tok]
        for tok in [k for k, v in self._refresh.items() if v.expires_at <= now]:
            del self._refresh[tok]
        day_ago = now - timedelta(days=1)
        for code in [k for k, v in self._codes.items() if v.expires_at <= day_ago]:
            del self._codes[code]

    def prune(self, *, now: datetime) -> None:
        """Forget expired state."""
        with self._lock:
            self._prune(now)
