"""Organisations and local staff accounts (argon2id), used by the CLI and the portal.

Usernames are kept and looked up in one canonical spelling (:func:`canonical_username`:
NFKC, case-folded, trimmed), so ``Admin``, ``admin `` and a full-width ``ａｄｍｉｎ`` are one
account, one throttle counter, and can never be two look-alike accounts.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.errors import Conflict, InvalidInput, NotAuthenticated, PermissionDenied
from openvisit.models import Organisation, StaffAccount
from openvisit.models.choices import STAFF_ROLES
from openvisit.portal import repository
from openvisit.portal.signin import passwords
from openvisit.portal.signin.throttle import SigninThrottle

#: org_admin configures everything; approver approves endpoints; reporter reads; operator
#: reads the outbox (``/ops/outbox``).
ROLES = STAFF_ROLES
_hasher = PasswordHasher()
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


def canonical_username(value: str) -> str:
    """The one spelling of a username: NFKC, case-folded (then NFKC again), trimmed."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    return folded.strip()


def canonical_login(login: str) -> tuple[str, str]:
    """``(organisation slug or "", username)`` of what was typed, both canonical."""
    slug, _, username = canonical_username(login).rpartition("/")
    return slug.strip(), username.strip()


async def get_or_create_organisation(
    session: AsyncSession, slug: str, *, display_name: str | None = None, actor: str = "cli"
) -> Organisation:
    """The organisation with ``slug``, created if missing."""
    if not _SLUG.match(slug):
        raise InvalidInput(
            f"{slug!r} is not a valid organisation slug: use 2–63 lower-case letters, digits "
            "and hyphens, starting with a letter or digit."
        )
    org = await repository.organisation_by_slug(session, slug)
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
    app: AppContext,
    username: str,
    password: str,
    roles: Sequence[str],
    actor: str = "cli",
) -> StaffAccount:
    """Create a local (username + password) staff account, its username made canonical.

    Raises :class:`InvalidInput` for a weak password, an unusable username or an unknown role,
    :class:`Conflict` if the username is taken in this organisation (in any spelling).
    """
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise InvalidInput(f"Unknown role(s) {', '.join(unknown)}; choose from {', '.join(ROLES)}.")
    name = canonical_username(username)
    if not name or len(name) > 150 or "/" in name or not name.isprintable():
        raise InvalidInput("A username is 1–150 printable characters without \"/\".",
                           details={"field": "username"})
    if len(password) < 12:
        raise InvalidInput("The password must be at least 12 characters long.")
    existing = await repository.account_by_username(
        session, organisation_id=organisation.id, username=name)
    if existing is not None:
        raise Conflict(f"There is already an account named {name!r} in this organisation.")
    account = StaffAccount(
        organisation_id=organisation.id,
        username=name,
        password_hash=await hash_password(app, password),
        roles=list(roles),
    )
    session.add(account)
    await session.flush()
    await record(
        session, actor=actor, action="staff.create", obj=account,
        organisation_id=organisation.id, after={"username": name, "roles": list(roles)},
    )
    return account


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check of ``password`` against an argon2 hash (blocking: ~0.2 s of CPU;
    call it through :mod:`openvisit.portal.signin.passwords`)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_password(app: AppContext, password: str) -> str:
    """An argon2id hash of ``password``, computed in a password worker thread."""
    return await passwords.workers(app).run(_hasher.hash, password)


# --- portal sign-in and staff management ---------------------------------------------------

#: A real argon2 hash of a random password, verified when no account matches so that a wrong
#: username costs the same time as a wrong password (no account enumeration by timing).
_DUMMY_HASH = _hasher.hash("openvisit-no-such-account-" + "x" * 16)

BAD_CREDENTIALS = (
    "That username and password do not match an account. Check the spelling and Caps Lock; "
    "a username that exists in several organisations is written organisation/username."
)
#: Added to :data:`BAD_CREDENTIALS` on the sign-in page when an identity provider is set up.
IDP_HINT = "If your organisation signs in through its identity provider, use the button above."


@dataclass(frozen=True)
class _Candidate:
    id: uuid.UUID
    password_hash: str
    is_active: bool


async def _candidate(app: AppContext, slug: str, username: str) -> _Candidate | None:
    """The one local account ``slug/username`` (or bare ``username``) names, if exactly one."""
    async with app.db.read() as session:
        found = [a for a in await repository.accounts_by_username(session, username)
                 if a.password_hash]
        if slug:
            org = await repository.organisation_by_slug(session, slug)
            found = [a for a in found if org is not None and a.organisation_id == org.id]
        if len(found) != 1:
            return None
        account = found[0]
        assert account.password_hash is not None
        return _Candidate(account.id, account.password_hash, account.is_active)


async def authenticate_local(
    app: AppContext, *, login: str, password: str, address: str
) -> uuid.UUID:
    """The id of the active local account that ``login`` and ``password`` prove.

    ``login`` is ``username`` or ``org-slug/username`` in any spelling (made canonical). In
    order: find the account (a read), count the attempt on the throttle (its own committed
    transaction: raises :class:`~openvisit.portal.signin.throttle.TooManySignins` before any
    password is checked once the limit is passed), verify the password in a worker thread (raises
    :class:`~openvisit.portal.signin.passwords.SigninBusy` when they are all taken). An
    unknown name, a name several organisations share, a deactivated account and a wrong password
    all cost one verification and raise the same :class:`NotAuthenticated`. No transaction or
    connection is held while the password is checked.
    """
    slug, username = canonical_login(login)
    candidate = await _candidate(app, slug, username) if username else None
    counter = f"account:{candidate.id}" if candidate else f"name:{slug}/{username}"
    throttle = SigninThrottle.of(app.hasher, account=counter, address=address)
    await throttle.attempt(app.db)
    ok = await passwords.workers(app).run(
        verify_password, candidate.password_hash if candidate else _DUMMY_HASH, password)
    if candidate is None or not ok or not candidate.is_active:
        raise NotAuthenticated(BAD_CREDENTIALS, title="Sign-in failed")
    await throttle.succeeded(app.db)
    return candidate.id


async def active_account(session: AsyncSession, account_id: uuid.UUID) -> StaffAccount | None:
    """The staff account ``account_id`` if it exists and is active, else ``None``.

    For the sign-in that :func:`authenticate_local` just proved: the account may have been
    deactivated (or removed) between that check, which holds no transaction, and now.
    """
    account = await session.get(StaffAccount, account_id)
    return account if account is not None and account.is_active else None


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
