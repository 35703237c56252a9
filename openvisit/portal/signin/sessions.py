"""Who is calling the portal: server-side staff sessions, API tokens and the CSRF secret.

Design: the browser holds an opaque random token in an ``HttpOnly``, ``SameSite=Lax`` cookie
(``Secure`` and ``__Host-`` prefixed when the public URL is https); the database holds only its
SHA-256 with the account, the session-bound CSRF token, an idle expiry (sliding) and an
absolute expiry. Server-side rows rather than signed cookies so that signing out, deactivating
an account or changing its roles takes effect on the next request, everywhere.

API tokens (``ovt_…``) serve hospitals that configure by code: ``Authorization: Bearer``, only
the SHA-256 stored. A token acts for the person who created it, as that person is *now*: on
every request (nothing cached) it is refused once its creator is deactivated or gone, and it
grants only the roles it was given that its creator still holds. Only a person signed in to
the portal creates tokens (a leaked token cannot mint replacements that outlive it).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.config import Settings
from openvisit.errors import InvalidInput, NotAuthenticated, NotFound, PermissionDenied
from openvisit.models import StaffAccount, utcnow
from openvisit.models.organisation import ApiToken, StaffSession
from openvisit.portal import repository
from openvisit.portal.signin.service import ROLES

TOKEN_PREFIX = "ovt_"
#: last_seen is written at most this often, so reading pages does not write on every request.
_TOUCH_EVERY = timedelta(seconds=60)
ROLE_LABELS = {"org_admin": "Org admin", "approver": "Approver", "reporter": "Reporter",
               "operator": "Operator", "front_desk": "Front desk"}


def digest(token: str) -> str:
    """SHA-256 hex of a session or API token (what the database keeps)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The signed-in person (or API token) a request acts for."""

    organisation_id: uuid.UUID
    roles: frozenset[str]
    via: str  # "session" | "token"
    actor: str  # audit actor: "staff:<uuid>" or "api_token:<uuid>"
    display: str
    #: The signed-in person (sessions only: approval needs a person in a browser).
    account_id: uuid.UUID | None = None
    csrf_token: str | None = None
    session_hash: str | None = None
    #: The person acting: the signed-in account, or the creator an API token acts for.
    owner_id: uuid.UUID | None = None
    #: When the session (or API token) was last recorded as used; :func:`touch` moves it.
    seen_at: datetime | None = None

    @property
    def due_for_touch(self) -> bool:
        """Whether the idle expiry (or the token's last use) should be written now."""
        return self.seen_at is None or utcnow() - self.seen_at >= _TOUCH_EVERY

    def has(self, *roles: str) -> bool:
        """Whether any of ``roles`` is held."""
        return bool(self.roles & set(roles))

    def require(self, *roles: str, doing: str) -> None:
        """Raise :class:`PermissionDenied` naming the needed role unless one is held."""
        if self.has(*roles):
            return
        labels = [ROLE_LABELS[r].lower() for r in roles]
        needed = " or ".join(labels) if len(labels) < 3 else (
            ", ".join(labels[:-1]) + " or " + labels[-1])
        held = ", ".join(ROLE_LABELS.get(r, r).lower() for r in sorted(self.roles)) or "no role"
        raise PermissionDenied(
            f"Only an {needed} can {doing}. You are signed in as {self.display} ({held}); ask "
            "your organisation admin if you need this.",
            title="Not allowed",
        )


def describe_account(account: StaffAccount) -> str:
    """How an account is shown: its username, or its IdP subject (no names are stored)."""
    return account.username or account.idp_subject or str(account.id)


async def start_session(
    session: AsyncSession, *, settings: Settings, account: StaffAccount, method: str
) -> str:
    """Open a session for ``account``; returns the token for the cookie (shown nowhere else)."""
    now = utcnow()
    token = secrets.token_urlsafe(32)
    session.add(StaffSession(
        token_hash=digest(token), account_id=account.id, csrf_token=secrets.token_urlsafe(32),
        method=method, created_at=now, last_seen_at=now,
        expires_at=now + timedelta(hours=settings.portal_session_max_hours),
    ))
    account.last_login_at = now
    await repository.purge_sessions(session, before=now - timedelta(days=1))
    await session.flush()
    await record(session, actor=f"staff:{account.id}", action="staff.sign_in",
                 object_type="staff_account", object_id=str(account.id),
                 organisation_id=account.organisation_id, after={"method": method})
    return token


async def principal_from_session(
    session: AsyncSession, *, settings: Settings, token: str
) -> Principal | None:
    """The principal of a session cookie, or None if unknown, ended, idle or expired.

    Only reads (a read-only session will do); :func:`touch` then slides the idle expiry.
    """
    row = await repository.session_by_hash(session, digest(token))
    if row is None or row.ended_at is not None:
        return None
    now = utcnow()
    idle = timedelta(minutes=settings.portal_session_idle_minutes)
    if row.expires_at <= now or row.last_seen_at + idle <= now:
        return None
    account = await session.get(StaffAccount, row.account_id)
    if account is None or not account.is_active:
        return None
    return Principal(
        organisation_id=account.organisation_id, roles=frozenset(account.roles or ()),
        via="session", actor=f"staff:{account.id}", display=describe_account(account),
        account_id=account.id, csrf_token=row.csrf_token, session_hash=row.token_hash,
        owner_id=account.id, seen_at=row.last_seen_at,
    )


async def touch(session: AsyncSession, *, principal: Principal) -> None:
    """Record that ``principal``'s session (sliding idle expiry) or API token was used now.

    A conditional update, so concurrent requests write at most once a minute between them.
    """
    now = utcnow()
    if principal.via == "session" and principal.session_hash is not None:
        await repository.touch_session(session, token_hash=principal.session_hash, now=now,
                                       every=_TOUCH_EVERY)
    elif principal.via == "token":
        await repository.touch_api_token(session,
                                         token_id=uuid.UUID(principal.actor.partition(":")[2]),
                                         now=now, every=_TOUCH_EVERY)


async def end_session(session: AsyncSession, *, principal: Principal) -> None:
    """Sign out: the session row ends now (the cookie becomes worthless everywhere)."""
    if principal.session_hash is None:
        return
    row = await repository.session_by_hash(session, principal.session_hash)
    if row is not None and row.ended_at is None:
        row.ended_at = utcnow()
        await session.flush()
        await record(session, actor=principal.actor, action="staff.sign_out",
                     object_type="staff_account", object_id=str(principal.account_id),
                     organisation_id=principal.organisation_id)


# --- API tokens --------------------------------------------------------------------------


async def create_api_token(
    session: AsyncSession, *, principal: Principal, name: str, roles: list[str],
    expires_in_days: int | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the token itself (shown once, never stored).

    Raises :class:`PermissionDenied` unless a signed-in org admin asks (not another token),
    :class:`InvalidInput` for a missing name, unknown roles or roles the creator lacks.
    """
    principal.require("org_admin", doing="create API tokens")
    if principal.via != "session" or principal.account_id is None:
        raise PermissionDenied(
            "API tokens are created by a person signed in to the portal (Staff & API tokens), "
            "not by another API token, so that revoking a token cannot leave copies behind.",
            title="Not allowed")
    label = name.strip()
    if not label or len(label) > 100:
        raise InvalidInput("Give the token a name of 1–100 characters, e.g. \"Terraform\".",
                           details={"field": "name"})
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise InvalidInput(f"Choose at least one role from {', '.join(ROLES)}.",
                           details={"field": "roles"})
    if not set(roles) <= principal.roles:
        raise InvalidInput("A token cannot have a role its creator does not hold.",
                           details={"field": "roles"})
    if expires_in_days is not None and not 1 <= expires_in_days <= 730:
        raise InvalidInput("A token expires after 1 to 730 days, or never.",
                           details={"field": "expires_in_days"})
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        organisation_id=principal.organisation_id, name=label, token_hash=digest(secret),
        prefix=secret[:10], roles=sorted(set(roles)), created_by=principal.actor,
        account_id=principal.account_id,
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(token)
    await session.flush()
    await record(session, actor=principal.actor, action="api_token.create", obj=token,
                 organisation_id=principal.organisation_id)
    return token, secret


async def list_api_tokens(session: AsyncSession, *, principal: Principal) -> list[ApiToken]:
    """The API tokens of the principal's organisation (org admins only)."""
    principal.require("org_admin", doing="list API tokens")
    return await repository.api_tokens_of(session, principal.organisation_id)


async def revoke_api_token(
    session: AsyncSession, *, principal: Principal, token_id: uuid.UUID
) -> ApiToken:
    """Revoke a token of the principal's organisation. Raises :class:`NotFound` otherwise."""
    principal.require("org_admin", doing="revoke API tokens")
    token = await session.get(ApiToken, token_id)
    if token is None or token.organisation_id != principal.organisation_id:
        raise NotFound("There is no such API token in your organisation.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await session.flush()
        await record(session, actor=principal.actor, action="api_token.revoke", obj=token,
                     organisation_id=principal.organisation_id)
    return token


async def principal_from_api_token(session: AsyncSession, *, secret: str) -> Principal:
    """The principal of a bearer token, as its creator is now (read on every request; only
    reads, :func:`touch` records the use).

    Its roles are the token's roles that the creator still holds (possibly none: every
    action then answers 403). Raises :class:`NotAuthenticated` for an unknown, revoked or
    expired token, or one whose creator is deactivated or gone.
    """
    token = (await repository.api_token_by_hash(session, digest(secret))
             if secret.startswith(TOKEN_PREFIX) else None)
    now = utcnow()
    if token is None or token.revoked_at is not None or (
            token.expires_at is not None and token.expires_at <= now):
        raise NotAuthenticated("This API token is unknown, revoked or expired. Create a new "
                               "one under Staff & API tokens.", code="invalid_token")
    creator = await session.get(StaffAccount, token.account_id)
    if creator is None or not creator.is_active or \
            creator.organisation_id != token.organisation_id:
        raise NotAuthenticated("The person who created this API token has been deactivated, "
                               "so it no longer works. An active org admin can create a new "
                               "one under Staff & API tokens.", code="invalid_token")
    return Principal(
        organisation_id=token.organisation_id,
        roles=frozenset(token.roles or ()) & frozenset(creator.roles or ()), via="token",
        actor=f"api_token:{token.id}",
        display=f"API token {token.name!r} of {describe_account(creator)}",
        owner_id=creator.id, seen_at=token.last_used_at,
    )


def session_cookie_name(settings: Settings) -> str:
    """``__Host-`` prefixed on https so no subdomain or path can overwrite it."""
    return "__Host-ov_portal" if settings.public_url.startswith("https://") else "ov_portal"


def is_expired(moment: datetime | None) -> bool:
    return moment is not None and moment <= utcnow()
