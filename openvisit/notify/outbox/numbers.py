"""Number "provisioning" by the embedded outbox provider: nothing leaves the machine.

It plays a real provider's asynchronous purchase so the portal's progress page and the job
chain behave as with Twilio: each step takes ``portal_outbox_provision_step_seconds``. Numbers
come from the fictional range 555-0100–0199 (reserved for fiction by the North American
Numbering Plan) in area code 202, i.e. +1 202 555 0100–0199, so a demo can never text a real
person while every number is still valid E.164.
"""

from __future__ import annotations

from openvisit.context import AppContext
from openvisit.errors import OutboundError

#: +1 202 555 0100 … +1 202 555 0199.
RANGE = [f"+1202555{100 + i:04d}" for i in range(100)]


class OutboxNumbers:
    """The outbox's number provider (see :class:`openvisit.notify.transport.NumberProvider`)."""

    name = "outbox"

    def __init__(self, app: AppContext) -> None:
        self.app = app

    def step_delay(self) -> float:
        return max(0.0, self.app.settings.portal_outbox_provision_step_seconds)

    async def search(self, *, country: str, exclude: set[str]) -> str:
        """The first fictional number nobody holds; raises when all hundred are taken."""
        for candidate in RANGE:
            if candidate not in exclude:
                return candidate
        raise OutboundError("All 100 fictional outbox numbers (+1 202 555 0100–0199) are in use; "
                            "release one on the SMS page.", permanent=True)

    async def purchase(self, *, e164: str, idempotency_key: str) -> str:
        return f"outbox-{e164.lstrip('+')}"

    async def configure(self, *, provider_ref: str, e164: str) -> None:
        return None

    async def verification(self, *, provider_ref: str, e164: str) -> str:
        # Fictional numbers reach no carrier, so there is nothing to verify.
        return "not_required"
