"""The one interface every SMS and e-mail provider implements, and the per-process registry.

A provider lives in its own folder (``notify/<name>/transport.py``) whose module offers
``sms_transport(app)`` and/or ``email_transport(app)``; adding a provider touches only that
folder and the name tables below. Transports are created once per process and reused: SMPP
keeps its bind open, Twilio its HTTP connection pool.

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

import importlib
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from openvisit.errors import ConfigurationError, OutboundError

if TYPE_CHECKING:
    from openvisit.context import AppContext

SMS_PROVIDERS = {
    "outbox": "openvisit.notify.outbox.transport",
    "twilio": "openvisit.notify.twilio.transport",
    "smpp": "openvisit.notify.smpp.transport",
    "azure": "openvisit.notify.azure.transport",
}
EMAIL_PROVIDERS = {
    "outbox": "openvisit.notify.outbox.transport",
    "smtp": "openvisit.notify.email.transport",
}


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
    ) -> SendResult:
        """Hand the message to the provider; returns its id (the Message-ID for SMTP)."""

    async def reconcile(
        self, *, to: str, subject: str, text: str, sender: str, reference: str, since: datetime
    ) -> list[SendResult]:
        """As :meth:`SmsTransport.reconcile`."""
        return []

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# ----------------------------------------------------------------------------- registry

_CACHE: dict[int, dict[str, Any]] = {}


def _cache_for(app: AppContext) -> dict[str, Any]:
    key = id(app)
    if key not in _CACHE:
        _CACHE[key] = {}
        weakref.finalize(app, _CACHE.pop, key, None)
    return _CACHE[key]


def _create(app: AppContext, table: dict[str, str], provider: str, factory: str) -> Any:
    module_name = table.get(provider)
    if module_name is None:
        raise ConfigurationError(
            f"Unknown notification provider {provider!r}; choose one of {', '.join(table)}."
        )
    module = importlib.import_module(module_name)
    return getattr(module, factory)(app)


def sms_transport(app: AppContext, provider: str) -> SmsTransport:
    """This process's transport for SMS ``provider`` (created on first use)."""
    cache = _cache_for(app)
    key = f"sms:{provider}"
    if key not in cache:
        cache[key] = _create(app, SMS_PROVIDERS, provider, "sms_transport")
    transport: SmsTransport = cache[key]
    return transport


def email_transport(app: AppContext, provider: str) -> EmailTransport:
    """This process's transport for e-mail ``provider`` (created on first use)."""
    cache = _cache_for(app)
    key = f"email:{provider}"
    if key not in cache:
        cache[key] = _create(app, EMAIL_PROVIDERS, provider, "email_transport")
    transport: EmailTransport = cache[key]
    return transport


def install(app: AppContext, *, channel: str, provider: str,
            transport: SmsTransport | EmailTransport) -> None:
    """Use ``transport`` for ``provider`` in this process (embedding, in-process fakes)."""
    _cache_for(app)[f"{channel}:{provider}"] = transport


async def close_all(app: AppContext) -> None:
    """Close every transport this process opened for ``app``."""
    for transport in list(_CACHE.pop(id(app), {}).values()):
        await transport.aclose()
