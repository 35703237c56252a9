"""Organisations and local staff accounts (argon2), used by the CLI and the portal."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.errors import Conflict, InvalidInput, NotAuthenticated, PermissionDenied
from openvisit.models import Organisation, StaffAccount
from openvisit.portal import repository

ROLES = ("org_admin", "approver", "reporter")
_hasher = PasswordHasher()
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


async def get_or_create_organisation(
    session: AsyncSession, slug: str, *, display_name: str | None = None, actor: str = "cli"
) -> Organisation:
    """The organisation with ``slug``, created if missing."""
    if not _SLUG.match(slug):
        raise InvalidInput(
            f"{slug!r} is not a valid organisation slug: use 2–63 lower-case letters, digits "
            "and hyphens, starting with a letter or digit."
        )
    org = await session.scalar(select(Organisation).where(Organisation.slug == slug))
    if org is None:
        org = Organisation(slug=slug, display_name=display_name or slug)
        session.add(org)
        await session.flush()
        await record(
            session, actor=actor, action="organisation.create", obj=org, organisation_id=org.id
        )
    return org


async def create_local_account(
    session: AsyncSession,
    organisation: Organisation,
    *,
    username: str,
    password: str,
    roles: list[str],
    actor: str = "cli",
) -> StaffAccount:
    """Create a local (username + password) staff account.

    Raises :class:`InvalidInput` for a weak password or unknown role, :class:`Conflict` if the
    username is taken in this organisation.
    """
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise InvalidInput(f"Unknown role(s) {', '.join(unknown)}; choose from {', '.join(ROLES)}.")
    if len(password) < 12:
        raise InvalidInput("The password must be at least 12 characters long.")
    existing = await session.scalar(
        select(StaffAccount).where(
            StaffAccount.organisation_id == organisation.id, StaffAccount.username == username
        )
    )
    if existing is not None:
        raise Conflict(f"There is already an account named {username!r} in this organisation.")
    account = StaffAccount(
        organisation_id=organisation.id,
        username=username,
        password_hash=_hasher.hash(password),
        roles=roles,
    )
    session.add(account)
    await session.flush()
    await record(
        session, actor=actor, action="staff.create", obj=account,
        organisation_id=organisation.id, after={"username": username, "roles": roles},
    )
    return account


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check of ``password`` against an argon2 hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


# --- portal sign-in and staff management ---------------------------------------------------

#: A real argon2 hash of a random password, verified when no account matches so that a wrong
#: username costs the same time as a wrong password (no account enumeration by timing).
_DUMMY_HASH = _hasher.hash("openvisit-no-such-account-" + "x" * 16)

BAD_CREDENTIALS = (
    "That username and password do not match an account. Check the spelling and Caps Lock; "
    "if your organisation signs in through its identity provider, use the button above."
)


async def authenticate_local(session: AsyncSession, *, login: str, password: str) -> StaffAccount:
    """The active local account for ``login`` (``username`` or ``org-slug/username``).

    Raises :class:`NotAuthenticated` with one message for every wrong combination, and
    :class:`InvalidInput` when a bare username exists in several organisations.
    """
    slug, _, username = login.strip().rpartition("/")
    candidates = [a for a in await repository.accounts_by_username(session, username)
                  if a.password_hash]
    if slug:
        org = await repository.organisation_by_slug(session, slug)
        candidates = [a for a in candidates if org is not None and a.organisation_id == org.id]
    if len(candidates) > 1:
        raise InvalidInput(
            f"The username {username!r} exists in several organisations; sign in as "
            f"organisation/{username} (for example default/{username}).",
            details={"field": "username"},
        )
    account = candidates[0] if candidates else None
    ok = verify_password(account.password_hash if account and account.password_hash
                         else _DUMMY_HASH, password)
    if account is None or not ok or not account.is_active:
        raise NotAuthenticated(BAD_CREDENTIALS, title="Sign-in failed")
    return account


async def account_for_idp(
    session: AsyncSession, *, issuer: str, subject: str, bootstrap_subjects: list[str],
    default_organisation: str,
) -> StaffAccount:
    """The staff account linked to this IdP identity.

    A subject listed in ``bootstrap_subjects`` becomes an org admin of
    ``default_organisation`` on first sign-in. Raises :class:`PermissionDenied` (saying whom
    to ask and what to tell them) for an unknown or deactivated identity.
    """
    account = await repository.account_by_idp(session, issuer=issuer, subject=subject)
    if account is None and subject in bootstrap_subjects:
        org = await get_or_create_organisation(session, default_organisation, actor="system")
        account = StaffAccount(organisation_id=org.id, idp_issuer=issuer, idp_subject=subject,
                               roles=["org_admin"])
        session.add(account)
        await session.flush()
        await record(session, actor="system", action="staff.bootstrap", obj=account,
                     organisation_id=org.id)
    if account is None:
        raise PermissionDenied(
            f"You signed in to your organisation's identity provider as {subject!r}, but no "
            "OpenVisit account is linked to that identity. Ask your OpenVisit organisation "
            f"admin to add you under Staff → \"Add a sign-in provider user\" with the subject "
            f"{subject!r} and the role you need.",
            title="No OpenVisit account for this sign-in",
        )
    if not account.is_active:
        raise PermissionDenied("This OpenVisit account has been deactivated; ask your "
                               "organisation admin to reactivate it.", title="Account deactivated")
    return account
