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


def scrub(value: str) -> str:
    """Mask e-mail addresses and phone-number-like digit runs in a string."""
    value = _EMAIL.sub("[email]", value)
    return _PHONE.sub("[phone]", value)


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
        _scrub_processor,
    ]
    if json:
        shared.append(structlog.processors.format_exc_info)
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
    for noisy in ("httpx", "urllib3.connectionpool", "twilio.http_client"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger; pass ids and event names as keyword arguments only."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
