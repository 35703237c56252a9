"""Staff accounts managed by org admins: local accounts, IdP users, roles, deactivation.

Roles (DESIGN §1): ``org_admin`` configures everything; ``approver`` (the EHR analyst)
approves endpoints by SMART sign-in and reads the integration records; ``reporter`` reads;
``operator`` reads the outbox (``/ops/outbox``: what the embedded SMS/e-mail provider kept).
An organisation always keeps at least one active org admin.

Two-person rule: nobody grants themselves the approver role (directly or through one of
their API tokens); another org admin must. With :mod:`openvisit.portal.approval.service`
refusing an approver who configured the endpoint, configuring and approving stay two people's acts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record, snapshot
from openvisit.config import Settings
from openvisit.context import AppContext
from openvisit.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from openvisit.models import Organisation, StaffAccount
from openvisit.models.choices import StaffRole, is_one_of
from openvisit.portal import repository
from openvisit.portal.signin.service import ROLES, canonical_username, create_local_account
from openvisit.portal.signin.sessions import Principal


def _check_roles(roles: list[str]) -> list[StaffRole]:
    known = [r for r in roles if is_one_of(r, ROLES)]
    unknown = [r for r in roles if not is_one_of(r, ROLES)]
    if unknown:
        raise InvalidInput(f"Unknown role(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(ROLES)}.", details={"field": "roles"})
    if not roles:
        raise InvalidInput("Tick at least one role: org admin, approver, reporter or operator.",
                           details={"field": "roles"})
    return sorted(set(known))


async def list_staff(session: AsyncSession, *, principal: Principal) -> list[StaffAccount]:
    """Every account of the principal's organisation."""
    return await repository.accounts_of(session, principal.organisation_id)


async def add_local(
    session: AsyncSession, *, app: AppContext, principal: Principal, username: str,
    password: str, roles: list[str],
) -> StaffAccount:
    """Create a local account (username made canonical).

    Raises :class:`InvalidInput` / :class:`Conflict` with the fix.
    """
    principal.require("org_admin", doing="add staff accounts")
    org = await session.get(Organisation, principal.organisation_id)
    assert org is not None
    try:
        return await create_local_account(session, org, app=app, username=username,
                                          password=password, roles=_check_roles(roles),
                                          actor=principal.actor)
    except Conflict as exc:
        raise Conflict(exc.message, details={"field": "username"}) from exc
    except InvalidInput as exc:
        if exc.details.get("field"):
            raise
        field = "password" if "password" in exc.message else "roles"
        raise InvalidInput(exc.message, details={"field": field}) from exc


async def add_idp_user(
    session: AsyncSession, *, principal: Principal, settings: Settings, subject: str,
    roles: list[str],
) -> StaffAccount:
    """Link an identity of the organisation's IdP (its ``sub``) to a new account.

    Raises :class:`InvalidInput` when no IdP is configured or the subject is empty, and
    :class:`Conflict` when that identity already has an account.
    """
    principal.require("org_admin", doing="add staff accounts")
    if not settings.oidc_issuer:
        raise InvalidInput("No identity provider is configured (OPENVISIT_OIDC_ISSUER), so "
                           "only local accounts can be added.", details={"field": "subject"})
    sub = subject.strip()
    if not sub or len(sub) > 255:
        raise InvalidInput("Enter the person's subject identifier (sub) at the identity "
                           "provider, as it shows it; 1–255 characters.",
                           details={"field": "subject"})
    issuer = settings.oidc_issuer.rstrip("/")
    if await repository.account_by_idp(session, issuer=issuer, subject=sub) is not None:
        raise Conflict(f"The identity {sub!r} already has an OpenVisit account.",
                       details={"field": "subject"})
    account = StaffAccount(organisation_id=principal.organisation_id, idp_issuer=issuer,
                           idp_subject=sub, roles=_check_roles(roles))
    session.add(account)
    await session.flush()
    await record(session, actor=principal.actor, action="staff.create", obj=account,
                 organisation_id=principal.organisation_id)
    return account


async def _own_account(session: AsyncSession, principal: Principal,
                       account_id: uuid.UUID) -> StaffAccount:
    account = await session.get(StaffAccount, account_id)
    if account is None or account.organisation_id != principal.organisation_id:
        raise NotFound("There is no such staff account in your organisation.")
    return account


async def _keeps_an_admin(session: AsyncSession, account: StaffAccount, *, roles: Sequence[str],
                          active: bool) -> None:
    if "org_admin" in roles and active:
        return
    others = [a for a in await repository.accounts_of(session, account.organisation_id)
              if a.id != account.id and a.is_active and "org_admin" in (a.roles or [])]
    if not others:
        raise InvalidInput("This is the organisation's last active org admin; give another "
                           "account the org admin role first.", details={"field": "roles"})


async def update_staff(
    session: AsyncSession, *, principal: Principal, account_id: uuid.UUID,
    roles: list[str] | None = None, active: bool | None = None,
) -> StaffAccount:
    """Change an account's roles and/or deactivate or reactivate it (audited).

    Raises :class:`PermissionDenied` when the caller would grant themselves the approver role
    and :class:`InvalidInput` when the organisation would lose its last active org admin.
    """
    principal.require("org_admin", doing="change staff accounts")
    account = await _own_account(session, principal, account_id)
    new_roles = _check_roles(roles) if roles is not None else list(account.roles or [])
    granted = set(new_roles) - set(account.roles or [])
    if "approver" in granted and principal.owner_id == account.id:
        raise PermissionDenied(
            "You cannot give yourself the approver role: another org admin must grant it "
            "(two-person rule: whoever configures an EHR endpoint is not the one who approves "
            "it).", title="Ask another org admin", details={"field": "roles"})
    new_active = account.is_active if active is None else active
    await _keeps_an_admin(session, account, roles=new_roles, active=new_active)
    before = snapshot(account)
    account.roles = new_roles
    account.is_active = new_active
    await session.flush()
    await record(session, actor=principal.actor, action="staff.update", obj=account,
                 before=before, organisation_id=principal.organisation_id)
    return account


async def set_roles_by_operator(session: AsyncSession, *, organisation_slug: str,
                                username: str, roles: list[str]) -> StaffAccount:
    """Set a local account's roles from the server's command line (audited as ``cli``).

    The server operator's way in, so no principal: :class:`NotFound` for an unknown account,
    :class:`InvalidInput` when the organisation would lose its last active org admin.
    """
    organisation = await repository.organisation_by_slug(session, organisation_slug)
    name = canonical_username(username)
    found = [a for a in await repository.accounts_by_username(session, name)
             if organisation is not None and a.organisation_id == organisation.id]
    if not found:
        raise NotFound(f"There is no local account {name!r} in organisation "
                       f"{organisation_slug!r}.")
    account = found[0]
    others = [a for a in await repository.accounts_of(session, account.organisation_id)
              if a.id != account.id and a.is_active and "org_admin" in (a.roles or [])]
    if "org_admin" in (account.roles or []) and "org_admin" not in roles and not others:
        raise InvalidInput(f"{name} is the last active org admin of {organisation_slug}; give "
                           "another account the org_admin role first.")
    before = snapshot(account)
    account.roles = _check_roles(roles)
    await session.flush()
    await record(session, actor="cli", action="staff.update", obj=account,
                 before=before, organisation_id=account.organisation_id)
    return account
