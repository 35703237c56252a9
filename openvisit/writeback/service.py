"""Write-back rules: the seam visit events call, and what the portal calls.

**The seam.** :func:`on_visit_event` is called by :func:`openvisit.visits.service.append_event`
(every lobby and visit step) and by :mod:`openvisit.devicetest.service` right after the
visit event row is flushed, in the caller's transaction: it asks the endpoint's adapter which
writes the event causes and adds one ``writeback`` row and one ``writeback.send`` job per
write. Both commit with the event or not at all. An endpoint with write-back off costs two
identity-map look-ups and writes nothing.

**Order.** Rows of one visit (``order_key``) are sent in ``id`` order (see
:mod:`openvisit.writeback.tasks`). A row added behind another of its visit in the same
transaction has its job due only after :data:`WAIT_BEHIND`: the one before it wakes it when
it lands, so it is not run just to find that it must wait. Steps of one seat are ordered by
the seat's row lock (``join``/``disconnect`` lock it), visit end by the visit's; two different
seats' events that commit in the opposite order of their ids are written in id order, which is
their order of insertion.

**Portal functions** (for the portal page and the bench): :func:`recent`, :func:`rerun`,
:func:`read_settings`, :func:`update_settings`, :func:`test_write`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record, snapshot
from openvisit.context import AppContext
from openvisit.errors import InvalidInput, NotFound, OpenVisitError
from openvisit.jobs import enqueue
from openvisit.logs import get_logger
from openvisit.models import Appointment, EhrEndpoint, Writeback, utcnow
from openvisit.models.choices import WritebackWhat
from openvisit.models.visit import Participant, Visit, VisitEvent
from openvisit.outbound import portal_http
from openvisit.writeback import adapter as a
from openvisit.writeback import repository as repo
from openvisit.writeback import resources as res
from openvisit.writeback.adapters import adapter_for
from openvisit.writeback.fhir import FhirClient, FhirWriteError
from openvisit.writeback.settings import (
    OPTIONS_KEY,
    WritebackSettings,
    parse,
    settings_of,
)
from openvisit.writeback.tokens import backend_tokens

log = get_logger(__name__)

SEND_JOB = "writeback.send"
#: Attempts before a write that keeps failing for passing reasons is shown as failed. With
#: the default backoff (5 s doubling, capped at an hour) that is about a day of outage.
MAX_ATTEMPTS = 30
ARRIVED_TEXT = "The patient is waiting in the video visit lobby."
#: How long a write waits behind an earlier one of its visit before it looks again by itself.
#: The earlier one wakes it as soon as it lands (or is skipped, or fails for good), so this
#: only bounds the delay of a wake that was lost (the earlier write's worker died and its
#: lease ran out, a savepoint rolled the earlier row back).
WAIT_BEHIND = timedelta(seconds=60)
#: ``session.info`` key: the visits (order keys) that got a write in this transaction.
_ORDER_KEYS = "openvisit.writeback.order_keys"


def job_key(row: Writeback) -> str:
    """The job of a row's current run (a re-run is a new job, the row's key stays)."""
    return f"writeback:{row.key}:{row.reruns}"


def _participant_agent(participant: Participant | None) -> dict[str, str] | None:
    if participant is None:
        return None
    if participant.role == "patient" and participant.patient_ref_enc:
        # Sealed until the send (PatientRefs.open_payload): no reference in clear at rest.
        return {"type": "Patient", "value_enc": participant.patient_ref_enc}
    if participant.ehr_user_id:
        return {"type": "Practitioner", "value": participant.ehr_user_id}
    return None


def _appointment_facts(appointment: Appointment) -> dict[str, Any]:
    return {"id": appointment.ehr_appointment_id, "encounter": appointment.encounter_id,
            "patient_enc": appointment.patient_ref_enc,
            "practitioner": appointment.provider_ehr_id}


async def _add(session: AsyncSession, *, endpoint: EhrEndpoint, order_key: str, key: str,
               what: WritebackWhat, event_kind: str, event_id: int | None,
               payload: dict[str, Any]) -> Writeback:
    row = Writeback(endpoint_id=endpoint.id, order_key=order_key, key=key, what=what,
                    event_kind=event_kind, visit_event_id=event_id, payload=payload)
    session.add(row)
    await session.flush()
    ordered: set[str] = session.info.setdefault(_ORDER_KEYS, set())
    behind = order_key in ordered  # an earlier write of this visit commits with it
    ordered.add(order_key)
    await enqueue(session, SEND_JOB, payload={"row_id": row.id}, idempotency_key=job_key(row),
                  max_attempts=MAX_ATTEMPTS, due_at=utcnow() + WAIT_BEHIND if behind else None)
    return row


async def on_visit_event(session: AsyncSession, *, visit: Visit, event: VisitEvent,
                         participant: Participant | None) -> list[Writeback]:
    """Add the writes ``event`` causes (rows and jobs) to the caller's transaction."""
    if visit.appointment_id is None:
        return []
    appointment = await session.get(Appointment, visit.appointment_id)
    if appointment is None:
        return []
    endpoint = await session.get(EhrEndpoint, appointment.endpoint_id)
    if endpoint is None:
        return []
    settings = settings_of(endpoint)
    if not settings.enabled:
        return []
    adapter = adapter_for(settings.profile_for(endpoint))
    whats = adapter.plan(event.kind, role=participant.role if participant else None,
                         has_encounter=bool(appointment.encounter_id), settings=settings,
                         options=endpoint.options or {})
    rows: list[Writeback] = []
    for what in whats:
        payload: dict[str, Any] = {"at": event.at.isoformat(),
                                   "appointment": _appointment_facts(appointment)}
        if what == a.AUDIT:
            payload["agent"] = _participant_agent(participant)
            payload["role"] = participant.role if participant else None
        elif what == a.ENCOUNTER:
            payload["started_at"] = (visit.started_at or event.at).isoformat()
            payload["ended_at"] = visit.ended_at.isoformat() if visit.ended_at else None
        elif what == a.ARRIVED:
            payload["text"] = ARRIVED_TEXT
        elif what == a.ARRIVED_WEBHOOK:
            payload["visit_id"] = str(visit.id)
        elif what == a.CONNECTION_STATUS:
            agent = _participant_agent(participant)
            payload["conference_id"] = visit.conference_id or appointment.encounter_id
            if agent and "value_enc" in agent:
                payload["external_id_enc"] = agent["value_enc"]
            else:
                payload["external_id"] = agent["value"] if agent else None
        rows.append(await _add(session, endpoint=endpoint, order_key=str(visit.id),
                               key=f"ve{event.id}.{what}", what=what, event_kind=event.kind,
                               event_id=event.id, payload=payload))
    if rows:
        log.info("writeback_enqueued", visit_id=str(visit.id), kind=event.kind,
                 writes=len(rows))
    return rows


async def on_devicetest(session: AsyncSession, *, endpoint: EhrEndpoint, visit: Visit,
                        event: VisitEvent,
                        patient_ref_enc: str | None = None) -> list[Writeback]:
    """The device-test result's Observation (or Communication), per the endpoint's choice."""
    settings = settings_of(endpoint)
    if not settings.enabled or settings.devicetest == "off":
        return []
    data = dict(event.data)
    result = {k: data.get(k) for k in ("passed", "camera", "microphone", "speaker", "call")}
    row = await _add(session, endpoint=endpoint, order_key=str(visit.id),
                     key=f"ve{event.id}.{a.DEVICETEST}", what=a.DEVICETEST,
                     event_kind=event.kind, event_id=event.id,
                     payload={"at": event.at.isoformat(), "result": result,
                              "patient_enc": patient_ref_enc, "as": settings.devicetest})
    return [row]


async def on_message_sent(session: AsyncSession, *, appointment: Appointment, channel: str,
                          template: str, message_key: str) -> list[Writeback]:
    """A Communication for one SMS/e-mail sent (no text: :attr:`WritebackSettings.
    message_text` is honoured by the caller handing the text, which this version does not)."""
    endpoint = await session.get(EhrEndpoint, appointment.endpoint_id)
    if endpoint is None:
        return []
    settings = settings_of(endpoint)
    key = f"msg.{message_key}"[:120]
    if not settings.enabled or not settings.messages or await repo.by_key(session, key):
        return []
    row = await _add(session, endpoint=endpoint, order_key=f"appt:{appointment.id}",
                     key=key, what=a.MESSAGE, event_kind=template[:32],
                     event_id=None,
                     payload={"at": utcnow().isoformat(), "channel": channel,
                              "template": template,
                              "appointment": _appointment_facts(appointment)})
    return [row]


# ------------------------------------------------------------------------ portal side

@dataclass(frozen=True)
class WritebackView:
    """One row as the portal shows it."""

    id: int
    what: str
    event_kind: str
    state: str
    attempts: int
    http_status: int | None
    error: str | None
    server_ref: str | None
    created_at: str
    sent_at: str | None

    @classmethod
    def of(cls, row: Writeback) -> WritebackView:
        return cls(id=row.id, what=row.what, event_kind=row.event_kind, state=row.state,
                   attempts=row.attempts, http_status=row.http_status, error=row.error,
                   server_ref=row.server_ref, created_at=row.created_at.isoformat(),
                   sent_at=row.sent_at.isoformat() if row.sent_at else None)


async def recent(session: AsyncSession, *, endpoint_id: uuid.UUID,
                 limit: int = 50) -> list[WritebackView]:
    """The endpoint's newest write-backs, newest first."""
    return [WritebackView.of(r) for r in await repo.recent(session, endpoint_id=endpoint_id,
                                                            limit=limit)]


async def rows_of_visit(session: AsyncSession, visit_id: uuid.UUID) -> Sequence[Writeback]:
    return await repo.for_order_key(session, str(visit_id))


async def rerun(session: AsyncSession, *, row_id: int,
                endpoint_id: uuid.UUID | None = None) -> Writeback:
    """Send a failed (or blocked) write again, after the cause was fixed: a new job, the same
    key, so what already landed is found, not written twice."""
    row = await session.get(Writeback, row_id)
    if row is None or (endpoint_id is not None and row.endpoint_id != endpoint_id):
        raise NotFound(f"There is no write-back {row_id} for this endpoint.")
    if row.state not in ("failed", "blocked"):
        raise InvalidInput(f"Write-back {row_id} is {row.state}; only failed or blocked "
                           "write-backs are re-run.")
    row.state, row.attempts, row.reruns, row.updated_at = "pending", 0, row.reruns + 1, utcnow()
    await session.flush()
    await enqueue(session, SEND_JOB, payload={"row_id": row.id}, idempotency_key=job_key(row),
                  max_attempts=MAX_ATTEMPTS)
    return row


async def state_counts(session: AsyncSession, *, endpoint_id: uuid.UUID) -> dict[str, int]:
    """The endpoint's write-backs by state (the portal's summary line)."""
    return await repo.state_counts(session, endpoint_id=endpoint_id)


async def count_failed(session: AsyncSession) -> int:
    """Write-backs the EHR refused for good (``openvisit_writeback_failed``)."""
    return await repo.count_failed(session)


def read_settings(endpoint: EhrEndpoint) -> WritebackSettings:
    return settings_of(endpoint)


async def update_settings(session: AsyncSession, *, endpoint: EhrEndpoint,
                          data: dict[str, Any], actor: str | None = None) -> WritebackSettings:
    """Validate and store the endpoint's write-back settings (raises :class:`InvalidInput`);
    with ``actor`` the change goes to the audit log as ``endpoint.writeback``."""
    settings = parse(data)
    before = snapshot(endpoint) if actor is not None else None
    endpoint.options = {**(endpoint.options or {}), OPTIONS_KEY: settings.model_dump(
        exclude_defaults=False)}
    # endpoint.version is not bumped: the approval binds to it, and what is written back
    # does not change who OpenVisit is to the EHR.
    await session.flush()
    if actor is not None:
        await record(session, actor=actor, action="endpoint.writeback", obj=endpoint,
                     before=before, organisation_id=endpoint.organisation_id)
    return settings


async def target_for(app: AppContext, endpoint: EhrEndpoint,
                     settings: WritebackSettings) -> a.WriteTarget:
    """A :class:`~openvisit.writeback.adapter.WriteTarget` with a backend-services token."""
    token = (await backend_tokens(app).token(app, endpoint, scope=settings.scope)
             if settings.backend_token else None)
    http = portal_http(app)
    secret = app.cipher.decrypt(settings.webhook_secret_enc) if settings.webhook_secret_enc \
        else None
    return a.WriteTarget(fhir=FhirClient(http, base=endpoint.fhir_base, access_token=token),
                         http=http, client_id=endpoint.client_id, access_token=token,
                         options=endpoint.options or {}, settings=settings,
                         webhook_secret=secret)


async def set_webhook_secret(session: AsyncSession, *, app: AppContext,
                             endpoint: EhrEndpoint, secret: str) -> None:
    """Store the patient-arrived webhook's secret, encrypted (at least 32 characters)."""
    if len(secret) < 32:
        raise InvalidInput("The webhook secret must be at least 32 characters long.")
    current = settings_of(endpoint).model_dump()
    current["webhook_secret_enc"] = app.cipher.encrypt(secret)
    await update_settings(session, endpoint=endpoint, data=current)


@dataclass(frozen=True)
class TestWriteResult:
    """What the EHR answered to the portal's test write."""

    ok: bool
    server_ref: str | None
    http_status: int | None
    message: str


async def test_write(app: AppContext, *, endpoint: EhrEndpoint) -> TestWriteResult:
    """Write one AuditEvent (a "visit started" of no real visit) to ``endpoint`` now and say
    what the EHR answered. Meant for the test environment; it does not use the queue."""
    settings = settings_of(endpoint)
    key = f"test.{uuid.uuid4().hex}"
    resource = res.audit_event(key=key, event_kind="started", at=utcnow(),
                               facts=res.Facts(appointment_id=""), agent_ref=None,
                               agent_role=None)
    try:
        target = await target_for(app, endpoint, settings)
        ref = await adapter_for("generic").write(
            a.Write(key=key, what=a.AUDIT, event_kind="started",
                    payload={"at": resource["recorded"].replace("Z", "+00:00"),
                             "appointment": {"id": ""}}), target)
    except FhirWriteError as exc:
        return TestWriteResult(ok=False, server_ref=None, http_status=exc.http_status,
                               message=exc.message)
    except OpenVisitError as exc:
        return TestWriteResult(ok=False, server_ref=None, http_status=None,
                               message=exc.message)
    return TestWriteResult(ok=True, server_ref=ref, http_status=201,
                           message=f"The EHR stored {ref}.")
