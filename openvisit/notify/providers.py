"""Which code serves each provider name: one table per channel, plain imports.

Adding a provider is its folder (``notify/<name>/transport.py``, ``numbers.py`` if it can buy
sending numbers) plus its line in a table below. Providers whose code needs nothing beyond
OpenVisit's own dependencies (the embedded outbox, SMTP, Azure over plain HTTPS, Twilio's
number API) are imported at the top. The two whose SDK is an extra (Twilio messaging: the
``twilio`` extra; SMPP: ``smpp``) each have ONE lazy import below, run only where that
provider is configured, so a bare ``pip install openvisit`` serves (tests/test_packaging.py)
and a missing extra is named in the error.

The Twilio SDK is imported in :func:`twilio_sdk` alone: the transport and the webhooks'
signature check (``notify/twilio/hooks.py``) both reach it through that function.

Transports are made once per process and kept in ``AppContext.services`` (SMPP keeps its
bind open, Twilio its HTTP pool); :meth:`~openvisit.context.AppContext.close` closes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from openvisit.context import AppContext
from openvisit.errors import ConfigurationError, InvalidInput
from openvisit.notify.azure import transport as azure
from openvisit.notify.email import transport as smtp
from openvisit.notify.outbox import numbers as outbox_numbers
from openvisit.notify.outbox import transport as outbox
from openvisit.notify.transport import EmailTransport, NumberProvider, SmsTransport
from openvisit.notify.twilio import numbers as twilio_numbers


def _missing_extra(exc: ImportError, *, package: str, extra: str, provider: str) -> None:
    """Raise :class:`ConfigurationError` naming the extra when ``package`` is what is missing;
    return (so the caller re-raises) for any other import error, which is a bug."""
    if exc.name is not None and exc.name.split(".")[0] == package:
        raise ConfigurationError(
            f"The {provider} SMS provider is configured (OPENVISIT_SMS_PROVIDER) but its "
            f"library is not installed: pip install 'openvisit[{extra}]'.") from exc


class TwilioSdk(Protocol):
    """What OpenVisit uses of ``notify/twilio/transport.py``, the module over the SDK."""

    def sms_transport(self, app: AppContext) -> SmsTransport: ...

    def signature_valid(self, *, auth_token: str, url: str, params: Mapping[str, Any],
                        signature: str, signature_settings: str) -> bool: ...


def twilio_sdk() -> TwilioSdk:
    """The Twilio module, through the ONE import of the optional Twilio SDK.

    Raises :class:`ConfigurationError` naming the ``twilio`` extra when the SDK is not
    installed (any other import error is a bug, and is raised as it is).
    """
    try:  # optional provider: the Twilio SDK (the ``twilio`` extra)
        from openvisit.notify.twilio import transport as twilio
    except ImportError as exc:
        _missing_extra(exc, package="twilio", extra="twilio", provider="Twilio")
        raise
    return twilio


def _twilio_sms(app: AppContext) -> SmsTransport:
    return twilio_sdk().sms_transport(app)


def _smpp_sms(app: AppContext) -> SmsTransport:
    try:  # optional provider: smpplib (the ``smpp`` extra)
        from openvisit.notify.smpp import transport as smpp
    except ImportError as exc:
        _missing_extra(exc, package="smpplib", extra="smpp", provider="SMPP")
        raise
    return smpp.sms_transport(app)


SMS_PROVIDERS: dict[str, Callable[[AppContext], SmsTransport]] = {
    "outbox": outbox.sms_transport,
    "twilio": _twilio_sms,
    "smpp": _smpp_sms,
    "azure": azure.sms_transport,
}
EMAIL_PROVIDERS: dict[str, Callable[[AppContext], EmailTransport]] = {
    "outbox": outbox.email_transport,
    "smtp": smtp.email_transport,
}
#: Providers that can buy sending numbers; the others' numbers come with the contract.
NUMBER_PROVIDERS: dict[str, Callable[[AppContext], NumberProvider]] = {
    "outbox": outbox_numbers.OutboxNumbers,
    "twilio": twilio_numbers.TwilioNumbers,
}


def _unknown(provider: str, table: dict[str, object]) -> ConfigurationError:
    return ConfigurationError(
        f"Unknown notification provider {provider!r}; choose one of {', '.join(table)}.")


def sms_transport(app: AppContext, provider: str) -> SmsTransport:
    """This process's transport for SMS ``provider`` (created on first use).

    Raises :class:`ConfigurationError` for an unknown provider or a missing extra.
    """
    made = app.services.sms_transports.get(provider)
    if made is None:
        factory = SMS_PROVIDERS.get(provider)
        if factory is None:
            raise _unknown(provider, dict(SMS_PROVIDERS))
        made = app.services.sms_transports[provider] = factory(app)
    return made


def email_transport(app: AppContext, provider: str) -> EmailTransport:
    """This process's transport for e-mail ``provider`` (created on first use).

    Raises :class:`ConfigurationError` for an unknown provider.
    """
    made = app.services.email_transports.get(provider)
    if made is None:
        factory = EMAIL_PROVIDERS.get(provider)
        if factory is None:
            raise _unknown(provider, dict(EMAIL_PROVIDERS))
        made = app.services.email_transports[provider] = factory(app)
    return made


def install(app: AppContext, *, channel: str, provider: str,
            transport: SmsTransport | EmailTransport) -> None:
    """Use ``transport`` for ``provider`` in this process (embedding, in-process fakes)."""
    if isinstance(transport, SmsTransport) and channel == "sms":
        app.services.sms_transports[provider] = transport
    elif isinstance(transport, EmailTransport) and channel == "email":
        app.services.email_transports[provider] = transport
    else:
        raise ValueError(f"{type(transport).__name__} is not a {channel} transport")


async def close_all(app: AppContext) -> None:
    """Close every transport this process opened for ``app``."""
    transports: list[SmsTransport | EmailTransport] = [
        *app.services.sms_transports.values(), *app.services.email_transports.values()]
    app.services.sms_transports.clear()
    app.services.email_transports.clear()
    for transport in transports:
        await transport.aclose()


def can_provision(provider: str) -> bool:
    """Whether OpenVisit can buy sending numbers through ``provider``."""
    return provider in NUMBER_PROVIDERS


def number_provider(app: AppContext, name: str) -> NumberProvider:
    """The number provider for ``name``; raises :class:`InvalidInput` if it cannot buy numbers."""
    factory = NUMBER_PROVIDERS.get(name)
    if factory is None:
        raise InvalidInput(
            f"The {name} SMS provider cannot buy numbers through OpenVisit; its numbers come "
            "with your contract. Register the number you were given instead.")
    return factory(app)
