"""Structured logging that never prints PHI.

Log ids and event names, never names, phone numbers, e-mail addresses or HL7/FHIR payloads.
The scrubber below is a second line of defence for when someone forgets: it drops fields
whose *name* says they hold PHI and masks phone numbers and e-mail addresses that slip into
any string value.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

#: Field names whose value is never logged, whatever it holds.
PHI_KEYS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "given",
        "family",
        "patient_name",
        "birth_date",
        "dob",
        "phone",
        "phone_number",
        "mobile",
        "to",
        "from_",
        "recipient",
        "email",
        "e_mail",
        "address",
        "body",
        "text",
        "payload",
        "message",
        "raw",
        "hl7",
        "fhir",
        "resource",
        "contact",
        "value",
        "password",
        "secret",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "client_secret",
        "code",
        "code_verifier",
    }
)
# "event" and "message" are structlog's own keys; "message" is only dropped when passed as kw.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
# Not inside identifiers: a run of digits glued to letters, "/" or "-" (UUIDs, paths) is an id.
_PHONE = re.compile(r"(?<![\w/-])\+?\d[\d\s().-]{7,}\d(?![\w/-])")
#: Dotted IPv4 addresses look like digit runs too; operators need them, so they stay.
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
#: Join tokens (``b64url(16 bytes) "." b64url(24 bytes)``) and other long opaque secrets
#: (SMART state, context tokens, API tokens): 32+ URL-safe characters with no separator.
#: UUIDs (hyphenated, groups of at most 12) are ids and stay readable.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}|(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}")


_UUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def _token(match: re.Match[str]) -> str:
    return match.group(0) if _UUID.fullmatch(match.group(0)) else "[token]"


def _phone(match: re.Match[str]) -> str:
    return match.group(0) if _IPV4.fullmatch(match.group(0)) else "[phone]"


def scrub(value: str) -> str:
    """Mask e-mail addresses, tokens and phone-number-like digit runs in a string."""
    value = _EMAIL.sub("[email]", value)
    value = _TOKEN.sub(_token, value)
    return _PHONE.sub(_phone, value)


def _scrub_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key == "event":
            if isinstance(event_dict[key], str):
                event_dict[key] = scrub(event_dict[key])
            continue
        if key.lower() in PHI_KEYS:
            event_dict[key] = "[redacted]"
        elif isinstance(event_dict[key], str):
            event_dict[key] = scrub(event_dict[key])
    return event_dict


def configure_logging(*, level: str = "INFO", json: bool = False) -> None:
    """Route structlog and stdlib logging through one scrubbed renderer on stderr."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        # Plain tracebacks: rich ones print local variables, which can hold PHI.
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks become a plain string *before* the scrubber, so an exception message
        # holding a phone number, an e-mail or a token is masked like any other value.
        structlog.processors.format_exc_info,
        _scrub_processor,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # Access logs print full URLs, which carry join tokens and launch parameters.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request URL at INFO; URLs can carry identifiers and query values.
    # aiosqlite logs every call with its arguments (SQL parameters) at DEBUG.
    for noisy in ("httpx", "urllib3.connectionpool", "twilio.http_client", "aiosqlite"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger; pass ids and event names as keyword arguments only."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
