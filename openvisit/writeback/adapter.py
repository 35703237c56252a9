"""The one interface every vendor profile implements, and what a write carries.

A :class:`Write` is one row of the ``writeback`` table as the adapter needs it (no ORM
object: adapters run with no transaction open). An adapter turns it into one or more HTTP
requests through a :class:`WriteTarget` and returns the ``Type/id`` the EHR stored, or raises
:class:`~openvisit.writeback.fhir.FhirWriteError` (classified: retry, conflict, permanent).

Each write must be safe to run twice: creates are conditional on the write's key
(``meta.tag`` + ``If-None-Exist``), updates are read-modify-write with ``If-Match`` and apply
the same facts again as a no-op, status calls set a state rather than add one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from openvisit.models.choices import WritebackWhat
from openvisit.writeback.fhir import FhirClient
from openvisit.writeback.settings import WritebackSettings

#: What a row writes (``Writeback.what``).
AUDIT: WritebackWhat = "audit"
ENCOUNTER: WritebackWhat = "encounter"
APPOINTMENT_STATUS: WritebackWhat = "appointment_status"
DEVICETEST: WritebackWhat = "devicetest"
MESSAGE: WritebackWhat = "message"
ARRIVED: WritebackWhat = "arrived"
CONNECTION_STATUS: WritebackWhat = "connection_status"
VIDEO_LINK: WritebackWhat = "video_link"
ARRIVED_WEBHOOK: WritebackWhat = "arrived_webhook"


@dataclass(frozen=True)
class Write:
    """One write: its key (the dedupe tag), what it is, the event behind it, its facts."""

    key: str
    what: WritebackWhat
    event_kind: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class WriteTarget:
    """Where and how to write: the FHIR client (token in), the raw HTTP client for non-FHIR
    vendor calls, the endpoint's client id and vendor options, its write-back settings."""

    fhir: FhirClient
    http: httpx.AsyncClient
    client_id: str
    access_token: str | None
    options: Mapping[str, Any] = field(default_factory=dict)
    settings: WritebackSettings = field(default_factory=WritebackSettings)
    #: The patient-arrived webhook's secret, decrypted (never logged, never in a payload).
    webhook_secret: str | None = field(default=None, repr=False)


class Adapter(Protocol):
    """A vendor profile: which writes an event causes, and how each is sent."""

    name: str

    def plan(self, event_kind: str, *, role: str | None, has_encounter: bool,
             settings: WritebackSettings, options: Mapping[str, Any]) -> list[WritebackWhat]:
        """The ``what`` of each write a visit event causes, in the order they are sent."""
        ...

    async def write(self, write: Write, target: WriteTarget) -> str | None:
        """Send ``write``; return the ``Type/id`` stored (None when nothing needed writing)."""
        ...
