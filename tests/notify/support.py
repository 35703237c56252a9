"""Building blocks for notification tests: a site (organisation + endpoint + SMS settings),
appointments with contacts, feed changes, and reading back jobs and message logs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.jobs.worker import Worker
from openvisit.models import (
    Appointment,
    Contact,
    EhrEndpoint,
    Job,
    MessageLog,
    Notification,
    Organisation,
    PhoneNumber,
    PhoneNumberEndpoint,
    SmsSettings,
)
from openvisit.notify.service import on_appointment_change


@dataclass(frozen=True)
class Site:
    organisation_id: uuid.UUID
    endpoint_id: uuid.UUID


async def make_site(
    app: AppContext, *, slug: str = "clinic", name: str = "Example Hospital",
    tz: str = "Europe/Prague", enabled: bool = True, confirmations: bool = True,
    offsets: list[int] | None = None, quiet: tuple[str, str] | None = None,
    rate_limit: int = 600, language: str = "en", number: str | None = None,
    number_provider: str = "outbox",
) -> Site:
    async with app.transaction() as session:
        org = Organisation(slug=slug, display_name=name, timezone=tz)
        session.add(org)
        await session.flush()
        endpoint = EhrEndpoint(organisation_id=org.id, fhir_base=f"https://{slug}.example/fhir",
                               client_id="openvisit", timezone=tz)
        session.add(endpoint)
        await session.flush()
        session.add(SmsSettings(
            endpoint_id=endpoint.id, enabled=enabled, confirmations_enabled=confirmations,
            reminder_offsets_minutes=[1440, 60] if offsets is None else offsets,
            quiet_hours_start=quiet[0] if quiet else None,
            quiet_hours_end=quiet[1] if quiet else None,
            default_language=language, rate_limit_per_minute=rate_limit,
        ))
        if number:
            phone = PhoneNumber(organisation_id=org.id, e164=number, provider=number_provider,
                                state="active")
            session.add(phone)
            await session.flush()
            session.add(PhoneNumberEndpoint(phone_number_id=phone.id, endpoint_id=endpoint.id))
        return Site(org.id, endpoint.id)


async def make_appointment(
    app: AppContext, site: Site, *, start_at: datetime, mobile: str | None = "+420601123456",
    email: str | None = None, department: str | None = "Cardiology",
    language: str | None = None, change: str | None = "booked",
) -> uuid.UUID:
    """An appointment with its contacts; ``change`` runs the feed's hook like SIU would."""
    async with app.transaction() as session:
        appt = Appointment(organisation_id=site.organisation_id, endpoint_id=site.endpoint_id,
                           ehr_appointment_id=f"A{uuid.uuid4().hex[:10]}", start_at=start_at,
                           end_at=start_at + timedelta(minutes=30), department=department,
                           language=language, **app.refs.columns("Patient/p1"), source="hl7")
        session.add(appt)
        await session.flush()
        purge_at = start_at + timedelta(days=1)
        if mobile:
            session.add(Contact(appointment_id=appt.id, kind="sms",
                                value_enc=app.cipher.encrypt(mobile), purge_at=purge_at))
        if email:
            session.add(Contact(appointment_id=appt.id, kind="email",
                                value_enc=app.cipher.encrypt(email), purge_at=purge_at))
        await session.flush()
        if change:
            await on_appointment_change(session, app=app, appointment=appt,
                                        change=change)  # type: ignore[arg-type]
        return appt.id


async def feed(app: AppContext, appointment_id: uuid.UUID, change: str, **updates: Any) -> None:
    """Apply ``updates`` to the appointment and call the hook, in one transaction."""
    async with app.transaction() as session:
        appt = await session.get(Appointment, appointment_id)
        assert appt is not None
        for name, value in updates.items():
            setattr(appt, name, value)
        await session.flush()
        await on_appointment_change(session, app=app, appointment=appt,
                                    change=change)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Planned:
    key: str
    purpose: str
    message: str
    state: str
    due_at: datetime
    start_at: datetime
    offset: int | None


async def planned(app: AppContext, appointment_id: uuid.UUID) -> list[Planned]:
    async with app.transaction() as session:
        rows = await session.execute(
            select(Notification, Job)
            .join(Job, Job.idempotency_key == Notification.job_key)
            .where(Notification.appointment_id == appointment_id)
            .order_by(Notification.id))
        return [Planned(n.job_key, n.purpose, n.message, j.state, j.due_at, n.start_at,
                        n.offset_minutes) for n, j in rows.all()]


def live(items: list[Planned]) -> list[Planned]:
    return [p for p in items if p.state != "cancelled"]


async def logs(app: AppContext, appointment_id: uuid.UUID | None = None) -> list[MessageLog]:
    """Message logs in the order their messages were planned."""
    async with app.transaction() as session:
        query = (select(MessageLog)
                 .join(Notification, Notification.job_key == MessageLog.job_key, isouter=True)
                 .order_by(Notification.id, MessageLog.created_at))
        if appointment_id is not None:
            query = query.where(MessageLog.appointment_id == appointment_id)
        return list((await session.scalars(query)).all())


async def run_jobs(app: AppContext, *, timeout: float = 30.0) -> None:
    await Worker(app, poll_seconds=0.05).run_until_empty(timeout=timeout)


async def make_due(app: AppContext, appointment_id: uuid.UUID) -> None:
    """Make every pending job of the appointment due now (instead of waiting for time)."""
    from openvisit.models import utcnow

    async with app.transaction() as session:
        keys = select(Notification.job_key).where(Notification.appointment_id == appointment_id)
        for job in (await session.scalars(
                select(Job).where(Job.idempotency_key.in_(keys), Job.state == "pending"))).all():
            job.due_at = utcnow()


@asynccontextmanager
async def page_client(app: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """A client for a tiny app holding only the notify routers (no lifespan: no receiver)."""
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    from openvisit.notify import views
    from openvisit.notify.twilio import hooks
    from openvisit.web import errors
    from openvisit.web.templating import STATIC_DIR

    web = FastAPI()
    web.state.ctx = app
    web.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    errors.install(web)
    web.include_router(views.router)
    web.include_router(hooks.router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web),
                                 base_url="http://testserver") as client:
        yield client
