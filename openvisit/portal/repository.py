"""Queries of the configuration portal: the only place in ``openvisit.portal`` that builds SQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.models import (
    Appointment,
    AuditLog,
    Certificate,
    ContextToken,
    EhrEndpoint,
    Organisation,
    PhoneNumber,
    PhoneNumberEndpoint,
    SigninFailure,
    SmsSettings,
    StaffAccount,
)
from openvisit.models.organisation import ApiToken, StaffSession

# --- organisations and staff -------------------------------------------------------------


async def organisation_by_slug(session: AsyncSession, slug: str) -> Organisation | None:
    return await session.scalar(select(Organisation).where(Organisation.slug == slug))


async def accounts_by_username(session: AsyncSession, username: str) -> list[StaffAccount]:
    """Local accounts with this username, in any organisation (usernames are per organisation)."""
    rows = await session.scalars(
        select(StaffAccount).where(StaffAccount.username == username)
        .order_by(StaffAccount.created_at)
    )
    return list(rows.all())


async def account_by_username(
    session: AsyncSession, *, organisation_id: uuid.UUID, username: str
) -> StaffAccount | None:
    """The organisation's local account with this (canonical) username."""
    return await session.scalar(
        select(StaffAccount).where(StaffAccount.organisation_id == organisation_id,
                                   StaffAccount.username == username)
    )


async def organisation_slugs(session: AsyncSession) -> list[str]:
    """Every organisation's slug, alphabetically."""
    return list((await session.scalars(
        select(Organisation.slug).order_by(Organisation.slug))).all())


async def account_by_idp(
    session: AsyncSession, *, issuer: str, subject: str
) -> StaffAccount | None:
    return await session.scalar(
        select(StaffAccount).where(StaffAccount.idp_issuer == issuer,
                                   StaffAccount.idp_subject == subject)
    )


async def accounts_of(session: AsyncSession, organisation_id: uuid.UUID) -> list[StaffAccount]:
    rows = await session.scalars(
        select(StaffAccount).where(StaffAccount.organisation_id == organisation_id)
        .order_by(StaffAccount.created_at)
    )
    return list(rows.all())


async def appointment_count(session: AsyncSession, organisation_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Appointment)
        .where(Appointment.organisation_id == organisation_id)
    )
    return int(count or 0)


async def appointment_count_for_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Appointment).where(Appointment.endpoint_id == endpoint_id)
    )
    return int(count or 0)


# --- sign-in throttle --------------------------------------------------------------------


@dataclass(frozen=True)
class SigninCount:
    attempts: int
    window_start: datetime


async def count_signin_attempt(
    session: AsyncSession, *, key: str, now: datetime, window: timedelta
) -> SigninCount:
    """Add one attempt to ``key``'s counter in one atomic upsert; returns the new count.

    A counter whose window has ended starts again at 1 with the window starting ``now``. The
    row is locked from this statement to the commit, so concurrent attempts are numbered one
    after the other, never lost (``INSERT … ON CONFLICT DO UPDATE … RETURNING``).
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(SigninFailure).values(key=key, failures=1, window_start=now)
    ended = SigninFailure.window_start <= now - window
    statement = insert.on_conflict_do_update(
        index_elements=[SigninFailure.key],
        set_={
            "failures": case((ended, 1), else_=SigninFailure.failures + 1),
            "window_start": case((ended, insert.excluded.window_start),
                                 else_=SigninFailure.window_start),
        },
    ).returning(SigninFailure.failures, SigninFailure.window_start)
    row = (await session.execute(statement)).one()
    return SigninCount(attempts=int(row[0]), window_start=row[1])


async def uncount_signin_attempt(session: AsyncSession, *, key: str) -> None:
    await session.execute(update(SigninFailure)
                          .where(SigninFailure.key == key, SigninFailure.failures > 0)
                          .values(failures=SigninFailure.failures - 1))


async def clear_signin_counter(session: AsyncSession, *, key: str) -> None:
    await session.execute(delete(SigninFailure).where(SigninFailure.key == key))


async def forget_signin_counters(session: AsyncSession, *, before: datetime) -> None:
    await session.execute(delete(SigninFailure).where(SigninFailure.window_start < before))


# --- sessions and API tokens -------------------------------------------------------------


async def session_by_hash(session: AsyncSession, token_hash: str) -> StaffSession | None:
    return await session.get(StaffSession, token_hash)


async def purge_sessions(session: AsyncSession, *, before: datetime) -> None:
    """Forget sessions that expired or ended before ``before``."""
    await session.execute(delete(StaffSession).where(StaffSession.expires_at < before))


async def api_token_by_hash(session: AsyncSession, token_hash: str) -> ApiToken | None:
    return await session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))


async def token_owners(session: AsyncSession, token_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """The accounts the given API tokens act for."""
    if not token_ids:
        return set()
    rows = await session.scalars(select(ApiToken.account_id).where(ApiToken.id.in_(token_ids)))
    return set(rows.all())


async def endpoint_history(session: AsyncSession, endpoint_id: uuid.UUID) -> list[AuditLog]:
    """Audit entries that create, change or approve this endpoint, oldest first."""
    rows = await session.scalars(
        select(AuditLog).where(
            AuditLog.object_type == "ehr_endpoint", AuditLog.object_id == str(endpoint_id),
            AuditLog.action.in_(("endpoint.create", "endpoint.update", "endpoint.approve")))
        .order_by(AuditLog.at, AuditLog.id))
    return list(rows.all())


async def api_tokens_of(session: AsyncSession, organisation_id: uuid.UUID) -> list[ApiToken]:
    rows = await session.scalars(
        select(ApiToken).where(ApiToken.organisation_id == organisation_id)
        .order_by(ApiToken.created_at.desc())
    )
    return list(rows.all())


# --- endpoints, SMS, numbers, certificates, tokens --------------------------------------


async def endpoints_of(session: AsyncSession, organisation_id: uuid.UUID) -> list[EhrEndpoint]:
    rows = await session.scalars(
        select(EhrEndpoint).where(EhrEndpoint.organisation_id == organisation_id)
        .order_by(EhrEndpoint.environment.desc(), EhrEndpoint.created_at)
    )
    return list(rows.all())


async def sms_settings_of(
    session: AsyncSession, endpoint_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, SmsSettings]:
    if not endpoint_ids:
        return {}
    rows = await session.scalars(
        select(SmsSettings).where(SmsSettings.endpoint_id.in_(list(endpoint_ids)))
    )
    return {row.endpoint_id: row for row in rows.all()}


async def numbers_of(session: AsyncSession, organisation_id: uuid.UUID) -> list[PhoneNumber]:
    rows = await session.scalars(
        select(PhoneNumber).where(PhoneNumber.organisation_id == organisation_id,
                                  PhoneNumber.state != "released")
        .order_by(PhoneNumber.created_at)
    )
    return list(rows.all())


async def taken_numbers(session: AsyncSession, *, prefix: str) -> set[str]:
    rows = await session.scalars(
        select(PhoneNumber.e164).where(PhoneNumber.e164.like(f"{prefix}%"))
    )
    return {value for value in rows.all() if value}


async def number_by_e164(session: AsyncSession, e164: str) -> PhoneNumber | None:
    return await session.scalar(select(PhoneNumber).where(PhoneNumber.e164 == e164))


async def organisation_number(
    session: AsyncSession, *, organisation_id: uuid.UUID, e164: str
) -> PhoneNumber | None:
    """The organisation's number ``e164`` unless released."""
    return await session.scalar(select(PhoneNumber).where(
        PhoneNumber.organisation_id == organisation_id, PhoneNumber.e164 == e164,
        PhoneNumber.state != "released"))


async def links_of(
    session: AsyncSession, organisation_id: uuid.UUID
) -> list[PhoneNumberEndpoint]:
    rows = await session.scalars(
        select(PhoneNumberEndpoint)
        .join(PhoneNumber, PhoneNumber.id == PhoneNumberEndpoint.phone_number_id)
        .where(PhoneNumber.organisation_id == organisation_id)
    )
    return list(rows.all())


async def links_of_endpoint(
    session: AsyncSession, endpoint_id: uuid.UUID
) -> list[PhoneNumberEndpoint]:
    rows = await session.scalars(
        select(PhoneNumberEndpoint).where(PhoneNumberEndpoint.endpoint_id == endpoint_id)
    )
    return list(rows.all())


async def certificates_of(session: AsyncSession, organisation_id: uuid.UUID) -> list[Certificate]:
    rows = await session.scalars(
        select(Certificate).where(Certificate.organisation_id == organisation_id)
        .order_by(Certificate.environment, Certificate.created_at.desc())
    )
    return list(rows.all())


async def live_context_token(
    session: AsyncSession, *, endpoint_id: uuid.UUID, purpose: str
) -> ContextToken | None:
    return await session.scalar(
        select(ContextToken).where(ContextToken.endpoint_id == endpoint_id,
                                   ContextToken.purpose == purpose,
                                   ContextToken.revoked_at.is_(None))
        .order_by(ContextToken.at.desc()).limit(1)
    )


# --- audit log ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page filters on; every field optional."""

    #: An action ("endpoint.approve") or every action of a kind ("endpoint.*").
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def audit_entries(
    session: AsyncSession, *, organisation_id: uuid.UUID, where: AuditFilter, limit: int,
    offset: int = 0,
) -> list[AuditLog]:
    """The organisation's audit entries matching ``where``, newest first."""
    query = select(AuditLog).where(AuditLog.organisation_id == organisation_id)
    if where.action and where.action.endswith(".*"):
        query = query.where(AuditLog.action.like(f"{where.action[:-1]}%"))
    elif where.action:
        query = query.where(AuditLog.action == where.action)
    if where.object_type:
        query = query.where(AuditLog.object_type == where.object_type)
    if where.object_id:
        query = query.where(AuditLog.object_id == where.object_id)
    if where.actor:
        query = query.where(AuditLog.actor == where.actor)
    if where.since:
        query = query.where(AuditLog.at >= where.since)
    if where.until:
        query = query.where(AuditLog.at < where.until)
    query = query.order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(limit).offset(offset)
    return list((await session.scalars(query)).all())


async def audit_facets(
    session: AsyncSession, *, organisation_id: uuid.UUID
) -> tuple[list[str], list[str], list[str]]:
    """Distinct actions, object types and actors of the organisation (for the filter menus)."""
    base = select(AuditLog).where(AuditLog.organisation_id == organisation_id).subquery()
    actions = await session.scalars(select(base.c.action).distinct().order_by(base.c.action))
    types = await session.scalars(
        select(base.c.object_type).distinct().order_by(base.c.object_type)
    )
    actors = await session.scalars(select(base.c.actor).distinct().order_by(base.c.actor))
    return list(actions.all()), list(types.all()), list(actors.all())


async def touch_session(session: AsyncSession, *, token_hash: str, now: datetime,
                        every: timedelta) -> None:
    """Slide a portal session's idle expiry, at most once per ``every`` (conditional)."""
    await session.execute(
        update(StaffSession)
        .where(StaffSession.token_hash == token_hash, StaffSession.last_seen_at <= now - every)
        .values(last_seen_at=now).execution_options(synchronize_session=False))


async def touch_api_token(session: AsyncSession, *, token_id: uuid.UUID, now: datetime,
                          every: timedelta) -> None:
    """Record an API token's use, at most once per ``every`` (conditional)."""
    await session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id,
               or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - every))
        .values(last_used_at=now).execution_options(synchronize_session=False))
