"""Store a device test's outcome: a ``devicetest`` visit of the token's organisation with one
``devicetest_result`` event (states and numbers, nothing about the person) and, when the test
call measured it, a quality sample."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.ehr_endpoints import repository as endpoints_repository
from openvisit.models import EhrEndpoint, utcnow
from openvisit.models.ops import ContextToken, QualitySample
from openvisit.models.visit import Visit, VisitEvent
from openvisit.writeback import service as writeback

Outcome = Literal["passed", "failed", "skipped"]


class CallReport(BaseModel):
    """What the browser measured on the test call."""

    model_config = ConfigDict(extra="forbid")

    status: Outcome
    frames_decoded: int = Field(default=0, ge=0, le=10_000_000)
    rtt_ms: float | None = Field(default=None, ge=0, le=60_000)
    jitter_ms: float | None = Field(default=None, ge=0, le=60_000)
    packet_loss_pct: float | None = Field(default=None, ge=0, le=100)
    frame_width: int | None = Field(default=None, ge=0, le=10_000)
    frame_height: int | None = Field(default=None, ge=0, le=10_000)
    candidate_type: Literal["host", "srflx", "prflx", "relay"] | None = None
    connect_ms: float | None = Field(default=None, ge=0, le=600_000)


class DeviceTestReport(BaseModel):
    """The page's report; ``ctx`` is the signed context token from the link."""

    model_config = ConfigDict(extra="forbid")

    ctx: str = Field(min_length=1, max_length=256)
    camera: Outcome
    microphone: Outcome
    speaker: Outcome
    call: CallReport
    language: str | None = Field(default=None, max_length=8)

    @property
    def passed(self) -> bool:
        """Every check passed (the speaker may be skipped: some phones cannot choose one)."""
        return (
            self.camera == "passed"
            and self.microphone == "passed"
            and self.speaker in ("passed", "skipped")
            and self.call.status == "passed"
        )


async def frame_ancestors(session: AsyncSession, *, token: ContextToken) -> list[str]:
    """The EHR origins that may show the token's device-test page in a frame."""
    return await endpoints_repository.frame_ancestors_of(session, token.endpoint_id)


async def record_result(
    session: AsyncSession, *, token: ContextToken, report: DeviceTestReport
) -> Visit:
    """Write the outcome in the caller's transaction; returns the ``devicetest`` visit."""
    endpoint = await session.get(EhrEndpoint, token.endpoint_id)
    if endpoint is None:  # the token row cascades with its endpoint; a race at most
        raise LookupError("the device-test token's endpoint is gone")
    now = utcnow()
    visit = Visit(
        id=uuid.uuid4(),
        organisation_id=endpoint.organisation_id,
        kind="devicetest",
        status="ended",
        started_at=now,
        ended_at=now,
    )
    session.add(visit)
    await session.flush()
    call = report.call
    event = VisitEvent(
            visit_id=visit.id,
            kind="devicetest_result",
            at=now,
            data={
                "endpoint_id": str(endpoint.id),
                "context_token_id": str(token.id),
                "passed": report.passed,
                "camera": report.camera,
                "microphone": report.microphone,
                "speaker": report.speaker,
                "call": call.model_dump(exclude_none=True),
                "language": report.language,
            },
        )
    session.add(event)
    await session.flush()
    # Write-back's seam: the result's Observation joins this transaction (issue 13).
    await writeback.on_devicetest(session, endpoint=endpoint, visit=visit, event=event)
    await record(session, actor=f"devicetest-link:{token.id}", action="devicetest.result",
                 object_type="visit", object_id=str(visit.id),
                 organisation_id=endpoint.organisation_id,
                 after={"passed": report.passed, "endpoint_id": str(endpoint.id)})
    if call.rtt_ms is not None or call.frame_width is not None:
        session.add(
            QualitySample(
                visit_id=visit.id,
                at=now,
                rtt_ms=call.rtt_ms,
                jitter_ms=call.jitter_ms,
                packet_loss_pct=call.packet_loss_pct,
                frame_width=call.frame_width,
                frame_height=call.frame_height,
            )
        )
    return visit
