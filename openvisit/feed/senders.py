"""Which EHR endpoint a message comes from: MSH-3/MSH-4 against each endpoint's senders.

HL7 v2.5.1 Ch. 2 §2.15.9.3-4 (MSH-3 sending application, MSH-4 sending facility, both HD).
Each endpoint lists the senders it accepts in ``options["hl7"]["senders"]`` as ``"APP^FACILITY"``
or ``"APP"`` (any facility). A pattern part matches an HD's namespace id or its universal id
(an OID), case-insensitively. The most specific match wins (``APP^FACILITY`` over ``APP``);
two endpoints matching equally specifically is a configuration error, refused rather than
guessed, because the wrong guess would file appointments under the wrong organisation.

The feed reads these settings once per ``hl7_config_refresh_seconds`` per process (not per
message); an unknown sender triggers one early reload (at most once a second) so a sender
added a moment ago is not refused.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from openvisit.context import AppContext
from openvisit.errors import InvalidInput
from openvisit.feed import repository
from openvisit.feed.service import hl7_options
from openvisit.hl7v2 import ErrorLocation, HierarchicDesignator, Hl7ApplicationError, MshHeader
from openvisit.logs import get_logger
from openvisit.models import EhrEndpoint

log = get_logger(__name__)

_MIN_RELOAD_SECONDS = 1.0


class UnknownSender(Hl7ApplicationError):
    """No endpoint (or not the endpoint named) accepts this MSH-3/MSH-4: rejected (AR)."""

    code = "hl7_unknown_sender"
    hl7_code = 204
    rejects = True


@dataclass(frozen=True, slots=True)
class SenderPattern:
    """One configured sender: an application and, optionally, a facility."""

    application: str
    facility: str | None = None

    @classmethod
    def parse(cls, text: str) -> SenderPattern:
        """Read ``"APP^FACILITY"`` or ``"APP"``; raises :class:`InvalidInput` when empty."""
        app_part, _, facility = (text or "").strip().partition("^")
        if not app_part.strip() or "^" in facility:
            raise InvalidInput(
                f"{text!r} is not a sender: write the sending application (MSH-3) and "
                "optionally the facility (MSH-4) as APP^FACILITY, e.g. EPIC^EPICADT."
            )
        return cls(app_part.strip(), facility.strip() or None)

    @property
    def specificity(self) -> int:
        return 2 if self.facility else 1

    def matches(self, header: MshHeader) -> bool:
        if not _hd_matches(self.application, header.sending_application):
            return False
        return self.facility is None or _hd_matches(self.facility, header.sending_facility)

    def __str__(self) -> str:
        return f"{self.application}^{self.facility}" if self.facility else self.application


def _hd_matches(pattern: str, value: HierarchicDesignator) -> bool:
    wanted = pattern.casefold()
    return any(
        part and part.casefold() == wanted for part in (value.namespace_id, value.universal_id)
    )


def sender_key(header: MshHeader, *, endpoint_id: uuid.UUID) -> str:
    """The idempotency scope of MSH-10: the endpoint plus MSH-3^MSH-4 as sent (≤ 255)."""
    app = header.sending_application.name or ""
    facility = header.sending_facility.name or ""
    return f"{endpoint_id}|{app}^{facility}"[:255]


@dataclass(frozen=True, slots=True)
class FeedEndpoint:
    """An endpoint as the feed needs it, read once and shared by every message.

    ``endpoint`` is detached from any session: read its columns, never add it to one.
    """

    endpoint: EhrEndpoint
    tz: tzinfo
    region: str
    senders: tuple[SenderPattern, ...]
    jws_issuers: frozenset[str]

    @property
    def id(self) -> uuid.UUID:
        return self.endpoint.id

    def best_match(self, header: MshHeader) -> int:
        """The specificity of the best sender pattern matching ``header`` (0 = none)."""
        return max((p.specificity for p in self.senders if p.matches(header)), default=0)


def _zone(name: str | None) -> tzinfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _feed_endpoint(endpoint: EhrEndpoint, region: str) -> FeedEndpoint:
    options = hl7_options(endpoint)
    patterns: list[SenderPattern] = []
    raw = options.get("senders")
    for text in raw if isinstance(raw, list) else []:
        try:
            patterns.append(SenderPattern.parse(str(text)))
        except InvalidInput:
            log.warning("hl7_sender_pattern_ignored", endpoint_id=str(endpoint.id))
    issuer = options.get("jws_issuer")
    issuers = {issuer} if isinstance(issuer, str) and issuer else {str(p) for p in patterns}
    return FeedEndpoint(
        endpoint=endpoint,
        tz=_zone(endpoint.timezone),
        region=(region or "US").upper(),
        senders=tuple(patterns),
        jws_issuers=frozenset(issuers),
    )


@dataclass
class SenderDirectory:
    """Per-process cache of the endpoints' feed settings; see the module docstring."""

    app: AppContext
    refresh_seconds: float = 5.0
    #: Seconds on a monotonic clock (injectable: tests move time instead of waiting).
    clock: Callable[[], float] = time.monotonic
    _endpoints: dict[uuid.UUID, FeedEndpoint] = field(default_factory=dict)
    _loaded_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def reload(self) -> None:
        """Read every endpoint's settings now."""
        async with self.app.transaction() as session:
            rows = await repository.feed_endpoints(session)
        self._endpoints = {e.id: _feed_endpoint(e, region) for e, region in rows}
        self._loaded_at = self.clock()

    async def _fresh(self, *, max_age: float) -> None:
        if self.clock() - self._loaded_at <= max_age:
            return
        async with self._lock:
            if self.clock() - self._loaded_at > max_age:
                await self.reload()

    async def get(self, endpoint_id: uuid.UUID) -> FeedEndpoint | None:
        """The endpoint with this id, or ``None``."""
        await self._fresh(max_age=self.refresh_seconds)
        found = self._endpoints.get(endpoint_id)
        if found is None:
            await self._fresh(max_age=_MIN_RELOAD_SECONDS)
            found = self._endpoints.get(endpoint_id)
        return found

    async def match(self, header: MshHeader) -> FeedEndpoint:
        """The endpoint whose senders match MSH-3/MSH-4 best.

        Raises :class:`UnknownSender` (AR) when none or several match equally well.
        """
        await self._fresh(max_age=self.refresh_seconds)
        try:
            return self._match(header)
        except UnknownSender:
            await self._fresh(max_age=_MIN_RELOAD_SECONDS)
            return self._match(header)

    def _match(self, header: MshHeader) -> FeedEndpoint:
        best, found = 0, list[FeedEndpoint]()
        for candidate in self._endpoints.values():
            score = candidate.best_match(header)
            if score > best:
                best, found = score, [candidate]
            elif score and score == best:
                found.append(candidate)
        if len(found) == 1:
            return found[0]
        sender = _describe(header)
        if not found:
            raise UnknownSender(
                f"unknown sender {sender}: no OpenVisit endpoint accepts it",
                location=ErrorLocation("MSH", field=3),
            )
        raise UnknownSender(
            f"sender {sender} is listed by {len(found)} OpenVisit endpoints; list it on one",
            location=ErrorLocation("MSH", field=3),
        )

    def check(self, feed_endpoint: FeedEndpoint, header: MshHeader) -> None:
        """Raise :class:`UnknownSender` unless ``feed_endpoint`` lists MSH-3/MSH-4."""
        if not feed_endpoint.best_match(header):
            raise UnknownSender(
                f"sender {_describe(header)} is not listed for this OpenVisit endpoint",
                location=ErrorLocation("MSH", field=3),
            )


def _describe(header: MshHeader) -> str:
    app = header.sending_application.name or ""
    facility = header.sending_facility.name or ""
    # Sender names are system codes, not PHI; still keep an odd value out of error texts.
    if len(app) + len(facility) > 60 or not (app + facility).isprintable():
        return "(unreadable MSH-3/MSH-4)"
    return f"(MSH-3 {app or '-'}, MSH-4 {facility or '-'})"


def directory_for(app: AppContext) -> SenderDirectory:
    """The process's shared :class:`SenderDirectory` (created on first use)."""
    directory = app.services.siu_senders
    if directory is None:
        directory = SenderDirectory(app, refresh_seconds=app.settings.hl7_config_refresh_seconds)
        app.services.siu_senders = directory
    return directory


def invalidate(app: AppContext) -> None:
    """Make this process read the endpoints' feed settings again on the next message."""
    directory = app.services.siu_senders
    if directory is not None:
        directory._loaded_at = float("-inf")
