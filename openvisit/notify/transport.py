"""The one interface every SMS and e-mail provider implements.

A provider lives in its own folder (``notify/<name>/transport.py``, and ``numbers.py`` if it
can buy sending numbers) whose module offers ``sms_transport(app)`` and/or
``email_transport(app)``; :mod:`openvisit.notify.providers` names it in one line. Transports
are created once per process and reused: SMPP keeps its bind open, Twilio its HTTP pool.

Errors say what a retry should do:

- :class:`RecipientRejected` - the provider refused this recipient for good (invalid or
  unreachable number, recipient opted out at the provider): the message is failed, the job
  is done, nobody needs to act.
- :class:`OutcomeUnknown` - the request may have reached the provider (a timeout after
  sending): the next attempt must :meth:`~SmsTransport.reconcile` before sending again.
- any other :class:`~openvisit.errors.OutboundError` - nothing was sent; retry when
  ``permanent`` is false, dead-letter for an operator when it is true.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from openvisit.errors import OutboundError


@dataclass(frozen=True)
class SendResult:
    """What the provider said when it accepted a message."""

    provider_message_id: str
    #: SMS parts the provider was handed (1 for e-mail).
    parts: int = 1


class RecipientRejected(OutboundError):
    """The provider will never deliver to this recipient; ``opted_out`` if they said STOP."""

    code = "recipient_rejected"

    def __init__(self, message: str, *, opted_out: bool = False, **kwargs: Any) -> None:
        super().__init__(message, permanent=True, **kwargs)
        self.opted_out = opted_out


class OutcomeUnknown(OutboundError):
    """The request may have been accepted: reconcile before sending again."""

    code = "outcome_unknown"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, permanent=False, **kwargs)


class CheckLater(Exception):  # a signal, like jobs.Defer, not an error
    """Reconciliation cannot tell yet (a receipt may still arrive); look again at ``until``."""

    def __init__(self, until: datetime, *, reason: str) -> None:
        super().__init__(reason)
        self.until = until
        self.reason = reason


class SmsTransport(ABC):
    """Sends one SMS; ``reference`` is the job's idempotency key."""

    name: ClassVar[str]

    @abstractmethod
    async def send(
        self, *, to: str, body: str, sender: str, reference: str,
        retain_until: datetime | None = None, first_attempt_at: datetime | None = None,
    ) -> SendResult:
        """Hand the message to the provider; returns its id.

        ``to`` is E.164; ``retain_until`` is when any copy the transport itself keeps must
        be gone (only the embedded outbox keeps one); ``first_attempt_at`` is when the first
        attempt of this message began, identical on every retry (providers with repeatable
        requests need it). Raises the errors described above.
        """

    async def reconcile(
        self, *, to: str, body: str, sender: str, reference: str, since: datetime
    ) -> list[SendResult]:
        """Messages the provider accepted for this send since ``since``, oldest first.

        Called when an earlier attempt's outcome is unknown. An empty list means "not sent,
        send again" under this provider's rule (see each transport); raises
        :class:`CheckLater` when the answer may still come.
        """
        return []

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most transports hold nothing
        """Release connections (called when the process stops)."""


class EmailTransport(ABC):
    """Sends one e-mail; ``reference`` is the job's idempotency key."""

    name: ClassVar[str]

    @abstractmethod
    async def send(
        self, *, to: str, subject: str, text: str, html: str | None, sender: str,
        sender_name: str, reference: str, retain_until: datetime | None = None,
        calendar: str | None = None,
    ) -> SendResult:
        """Hand the message to the provider; returns its id (the Message-ID for SMTP).
        ``calendar``: the visit's .ics, attached as ``visit.ics``."""

    async def reconcile(
        self, *, to: str, subject: str, text: str, sender: str, reference: str, since: datetime
    ) -> list[SendResult]:
        """As :meth:`SmsTransport.reconcile`."""
        return []

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class NumberProvider(Protocol):
    """What an SMS provider offers for buying sending numbers (``<name>/numbers.py``)."""

    name: str

    def step_delay(self) -> float:
        """Seconds to wait between steps (a real provider: 0; the outbox simulates one)."""
        ...

    async def search(self, *, country: str, exclude: set[str]) -> str:
        """An available SMS-capable number (E.164) not in ``exclude``."""
        ...

    async def purchase(self, *, e164: str, idempotency_key: str) -> str:
        """Buy (or find already bought) ``e164``; returns the provider's reference."""
        ...

    async def configure(self, *, provider_ref: str, e164: str) -> None:
        """Set the bought number up for sending."""
        ...

    async def verification(self, *, provider_ref: str, e164: str) -> str:
        """``verified``, ``pending``, ``unverified`` or ``not_required``."""
        ...
