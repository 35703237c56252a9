"""Organisations and local staff accounts (argon2), used by the CLI and the portal."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.errors import Conflict, InvalidInput
from openvisit.models import Organisation, StaffAccount

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
