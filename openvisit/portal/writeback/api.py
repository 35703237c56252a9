"""JSON API of an endpoint's write-back (``/api/portal/endpoints/{id}/writeback``)."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from openvisit.models.choices import WritebackProfile, WritebackState
from openvisit.portal.endpoints import service as admin
from openvisit.portal.web import PrincipalDep
from openvisit.portal.writeback import service as portal_writeback
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.schemas import error_responses
from openvisit.writeback.service import WritebackView
from openvisit.writeback.settings import WritebackSettings

router = APIRouter(
    prefix="/api/portal", tags=["portal"], responses=error_responses(401, 403, 404, 409, 422, 429)
)


class WritebackSettingsIO(BaseModel):
    """What an endpoint writes back. ``webhook_secret`` is write-only: empty keeps the stored
    one; the answer says only whether one is stored."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    profile: WritebackProfile = "generic"
    audit_events: bool = True
    encounter: bool = True
    appointment_status: bool = False
    devicetest: Literal["observation", "communication", "off"] = "observation"
    messages: bool = True
    message_text: bool = False
    patient_arrived: bool = False
    webhook_url: str = Field(default="", max_length=500)
    webhook_secret: str = Field(default="", max_length=500, description="write-only")
    clear_webhook_secret: bool = False
    backend_token: bool = True
    scopes: str = Field(default="", max_length=1000)
    has_webhook_secret: bool = Field(default=False, description="read-only")

    @classmethod
    def of(cls, settings: WritebackSettings, profile: str) -> WritebackSettingsIO:
        data = settings.model_dump()
        secret = bool(data.pop("webhook_secret_enc", ""))
        data["profile"] = profile
        return cls.model_validate({**data, "has_webhook_secret": secret})


class WritebackOut(BaseModel):
    id: int
    what: str
    event_kind: str
    state: WritebackState
    attempts: int
    http_status: int | None
    error: str | None = Field(description="The EHR's own words of the last failure.")
    server_ref: str | None = Field(description="Type/id of what the EHR stored.")
    created_at: str
    sent_at: str | None

    @classmethod
    def of(cls, view: WritebackView) -> WritebackOut:
        return cls.model_validate(view.__dict__)


class WritebackListOut(BaseModel):
    failed: int = Field(description="Failed, or blocked behind a failed write of their visit.")
    waiting: int = Field(description="Pending or retrying.")
    items: list[WritebackOut]


class TestWriteOut(BaseModel):
    ok: bool
    http_status: int | None
    server_ref: str | None
    message: str


@router.get("/endpoints/{endpoint_id}/writeback", response_model=WritebackSettingsIO)
async def writeback_settings(endpoint_id: uuid.UUID, session: SessionDep,
                             principal: PrincipalDep) -> WritebackSettingsIO:
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    view = await portal_writeback.page(session, principal=principal, endpoint=endpoint, limit=0)
    return WritebackSettingsIO.of(view.settings, view.profile)


@router.put("/endpoints/{endpoint_id}/writeback", response_model=WritebackSettingsIO)
async def writeback_settings_put(endpoint_id: uuid.UUID, body: WritebackSettingsIO,
                                 session: SessionDep, ctx: CtxDep,
                                 principal: PrincipalDep) -> WritebackSettingsIO:
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    saved = await portal_writeback.save(session, app=ctx, principal=principal, endpoint=endpoint,
                                        data=portal_writeback.SettingsInput(
        enabled=body.enabled, profile=body.profile, devicetest=body.devicetest,
        switches={n: bool(getattr(body, n)) for n in portal_writeback.SWITCHES},
        webhook_url=body.webhook_url, webhook_secret=body.webhook_secret,
        clear_webhook_secret=body.clear_webhook_secret, scopes=body.scopes))
    return WritebackSettingsIO.of(saved, saved.profile_for(endpoint))


@router.get("/endpoints/{endpoint_id}/writebacks", response_model=WritebackListOut)
async def writebacks(endpoint_id: uuid.UUID, session: SessionDep,
                     principal: PrincipalDep) -> WritebackListOut:
    """The endpoint's 50 newest write-backs, newest first, with the counts that need a look."""
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    view = await portal_writeback.page(session, principal=principal, endpoint=endpoint)
    return WritebackListOut(failed=view.failed, waiting=view.waiting,
                            items=[WritebackOut.of(v) for v in view.recent])


@router.post("/endpoints/{endpoint_id}/writebacks/{row_id}/rerun", response_model=WritebackOut,
             status_code=202)
async def writeback_rerun(endpoint_id: uuid.UUID, row_id: int, session: SessionDep,
                          principal: PrincipalDep) -> WritebackOut:
    """Send a failed or blocked write-back again (after the cause was fixed in the EHR)."""
    endpoint = await admin.get_for(session, principal=principal, endpoint_id=endpoint_id)
    return WritebackOut.of(await portal_writeback.rerun(session, principal=principal,
                                                        endpoint=endpoint, row_id=row_id))


@router.post("/endpoints/{endpoint_id}/writeback/test", response_model=TestWriteOut)
async def writeback_test(endpoint_id: uuid.UUID, ctx: CtxDep,
                         principal: PrincipalDep) -> TestWriteOut:
    """Write one AuditEvent to a test endpoint now and say what the EHR answered."""
    result = await portal_writeback.test_write(ctx, principal=principal, endpoint_id=endpoint_id)
    return TestWriteOut(ok=result.ok, http_status=result.http_status,
                        server_ref=result.server_ref, message=result.message)
