"""What an endpoint writes back, kept in ``endpoint.options["writeback"]`` (no new columns,
like the vendors' own options). Off until an admin turns it on: a new endpoint writes nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openvisit.errors import InvalidInput
from openvisit.models import EhrEndpoint
from openvisit.models.choices import WritebackProfile

OPTIONS_KEY = "writeback"
#: The scopes asked for by default: create AuditEvent, Observation and Communication; read
#: and update Encounter and Appointment (SMART v2 syntax; v1 servers: set ``scopes``).
DEFAULT_SCOPES = ("system/AuditEvent.c system/Observation.c system/Communication.c "
                  "system/Encounter.ru system/Appointment.ru")


class WritebackSettings(BaseModel):
    """Per-endpoint switches of what is written, and the vendor profile that writes it."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    #: generic (FHIR only), epic (connection status + FHIR), oracle (Appointment PATCH, rooms).
    profile: WritebackProfile | None = None
    #: One AuditEvent per participant connected/disconnected/admitted/sent back/removed and
    #: visit started/ended.
    audit_events: bool = True
    #: Encounter status in-progress/finished, class VR, period.
    encounter: bool = True
    #: Appointment.status arrived/fulfilled (If-Match); off where the EHR does not allow it.
    appointment_status: bool = False
    #: Device-test result as an Observation, a Communication, or not at all.
    devicetest: Literal["observation", "communication", "off"] = "observation"
    #: A Communication per SMS/e-mail sent; ``message_text`` adds the text (off by default).
    messages: bool = True
    message_text: bool = False
    #: A Communication to the practitioner when the patient arrives in the lobby.
    patient_arrived: bool = False
    #: Also (or instead) a signed webhook when the patient arrives: POSTed JSON with
    #: ``X-OpenVisit-Signature: sha256=<HMAC-SHA256(secret, "<timestamp>.<body>")>``.
    webhook_url: str = Field(default="", max_length=500)
    #: The webhook's secret, encrypted with the field cipher (``service.set_webhook_secret``).
    webhook_secret_enc: str = Field(default="", max_length=2000)
    #: False only for an open FHIR server (a vendor's public test server): no token is asked
    #: for and no Authorization header sent.
    backend_token: bool = True
    #: Backend-services scopes; empty means :data:`DEFAULT_SCOPES`.
    scopes: str = Field(default="", max_length=1000)

    def profile_for(self, endpoint: EhrEndpoint) -> WritebackProfile:
        """The profile set here, else the endpoint's vendor (each vendor has one)."""
        return self.profile or endpoint.vendor

    @property
    def scope(self) -> str:
        return self.scopes.strip() or DEFAULT_SCOPES


def settings_of(endpoint: EhrEndpoint) -> WritebackSettings:
    """The endpoint's settings; a malformed stored value reads as "off" rather than failing
    the visit event that asks (the portal shows and rewrites it)."""
    raw = (endpoint.options or {}).get(OPTIONS_KEY) or {}
    try:
        return WritebackSettings.model_validate(raw)
    except ValidationError:
        return WritebackSettings()


def parse(data: dict[str, Any]) -> WritebackSettings:
    """Validate settings from the portal or API; raises :class:`InvalidInput` naming fields."""
    try:
        return WritebackSettings.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise InvalidInput(
            f"These write-back settings are not valid: {', '.join(fields)}. "
            "Check the values and save again.", details={"fields": fields}) from None
