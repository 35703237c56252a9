"""One inbound HL7 message in, its ACK out: the message layer shared by MLLP and HTTPS.

HL7 v2.5.1 Ch. 2 §2.9.2-2.9.3 (original and enhanced acknowledgement), §2.10.1 (MSH-10 as the
duplicate-detection key), §2.15.8 (MSA); Ch. 10 (SIU). The decisions, in order:

1. MSH unreadable → AR through :func:`~openvisit.hl7v2.build_fallback_ack`.
2. MSH-3/MSH-4 listed by no endpoint (or not by the endpoint an HTTPS caller named) → AR.
3. SIU unparseable → AE, or AR for an unsupported type/event/version/processing id
   (``Hl7Error.rejects``), with ERR and a readable MSA-3.
4. MSH-10 already accepted from this sender → the stored ACK again, nothing applied.
5. Otherwise apply + record the MSH-10 with its ACK in ONE transaction, and answer AA (CA in
   enhanced mode) only after that commit.
6. Anything failing on our side (database down, deadlock, a bug) → AE "temporary error,
   resend later"; nothing is committed, so the resend is applied exactly once.

Enhanced mode (MSH-15/16 valued) is honoured through :func:`~openvisit.hl7v2.ack_mode`: commit
acks CA/CE/CR, sent only when MSH-15 asks for them. No payload is ever logged.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext
from openvisit.errors import ConfigurationError, OpenVisitError
from openvisit.hl7v2 import (
    AckCode,
    AckMode,
    Hl7ApplicationError,
    Hl7Error,
    Hl7ParseError,
    MshHeader,
    SiuMessage,
    ack_mode,
    build_ack,
    build_fallback_ack,
    parse_msh,
    parse_siu,
)
from openvisit.logging import get_logger
from openvisit.models import InboundMessage
from openvisit.scheduling import repository
from openvisit.scheduling.senders import FeedEndpoint, SenderDirectory, directory_for, sender_key
from openvisit.scheduling.service import apply_siu

log = get_logger(__name__)

TEMPORARY_TEXT = "temporary error, resend later"
#: Attempts at one transaction that lost a race (two new messages for one appointment).
_ATTEMPTS = 3

BeforeCommit = Callable[[AsyncSession], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FeedReply:
    """The outcome of one message: the ACK to send (``None`` when enhanced mode asks for
    none) and what to log and report; ``temporary`` marks our own failure (resend later)."""

    ack: bytes | None
    code: AckCode
    control_id: str | None = None
    event: str | None = None
    endpoint_id: uuid.UUID | None = None
    duplicate: bool = False
    temporary: bool = False


class TemporaryFailure(Hl7ApplicationError):
    """Our side failed (0357: 207); nothing was committed, the sender should resend."""

    code = "hl7_temporary_failure"
    hl7_code = 207

    def __init__(self) -> None:
        super().__init__(TEMPORARY_TEXT, permanent=False)


def _header_of(raw: bytes) -> MshHeader:
    # The header is all routing needs; reading only the first segment spares a second full
    # tokenisation of the message (parse_siu reads it all anyway).
    end = len(raw)
    for terminator in (b"\r", b"\n"):
        found = raw.find(terminator)
        if 0 <= found < end:
            end = found
    return parse_msh(raw[:end])


class SiuFeed:
    """Turns raw SIU messages into ACKs for one process; safe to share between connections."""

    def __init__(self, app: AppContext, *, directory: SenderDirectory | None = None) -> None:
        self.app = app
        self.directory = directory or directory_for(app)

    def _ack(
        self,
        header: MshHeader,
        *,
        code: AckCode,
        error: Hl7Error | None = None,
        text: str | None = None,
    ) -> bytes:
        settings = self.app.settings
        return build_ack(
            header,
            code=code,
            control_id=new_control_id(),
            now=datetime.now(UTC),
            sending_application=header.receiving_application.name or settings.hl7_ack_application,
            sending_facility=header.receiving_facility.name or settings.hl7_ack_facility,
            error=error,
            text=text,
        )

    async def handle(
        self,
        raw: bytes,
        *,
        endpoint_id: uuid.UUID | None = None,
        before_commit: BeforeCommit | None = None,
        transport: str = "mllp",
    ) -> FeedReply:
        """Process one message and return its :class:`FeedReply`; never raises for any input.

        ``endpoint_id`` pins the endpoint (HTTPS names it; MLLP finds it from MSH-3/MSH-4).
        ``before_commit`` runs inside the transaction both for new and for duplicate messages
        (HTTPS records the JWS ``jti`` there); whatever it raises propagates, nothing commits.
        """
        started = time.perf_counter()
        reply = await self._handle(raw, endpoint_id=endpoint_id, before_commit=before_commit)
        log.info(
            "hl7_message",
            transport=transport,
            hl7_event=reply.event,
            control_id=reply.control_id,
            endpoint_id=str(reply.endpoint_id or "") or None,
            ack_code=reply.code,
            duplicate=reply.duplicate,
            temporary=reply.temporary,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return reply

    async def _handle(
        self, raw: bytes, *, endpoint_id: uuid.UUID | None, before_commit: BeforeCommit | None
    ) -> FeedReply:
        try:
            header = _header_of(raw)
        except Hl7ParseError as error:
            return self._fallback(raw, error)
        except Exception as exc:  # it promises Hl7ParseError; a listener never trusts that
            log.error("hl7_header_reader_failed", error_type=type(exc).__name__)
            return self._fallback(raw, Hl7ParseError("the MSH segment could not be read"))
        mode = ack_mode(header)
        try:
            feed_endpoint = await self._endpoint(header, endpoint_id=endpoint_id)
        except Hl7Error as error:
            return self._reply(header, mode, error)
        except Exception as exc:
            return self._temporary(header, mode, exc)
        known = feed_endpoint.id
        try:
            message = parse_siu(
                raw, default_tz=feed_endpoint.tz, default_region=feed_endpoint.region
            )
        except Hl7Error as error:
            return self._reply(header, mode, error, known)
        except ConfigurationError as error:
            log.error(
                "hl7_endpoint_misconfigured",
                endpoint_id=str(feed_endpoint.id),
                error_code=error.code,
            )
            return self._reply(
                header,
                mode,
                Hl7ApplicationError(f"OpenVisit configuration error: {error.message}"),
                known,
            )
        except Exception as exc:
            return self._temporary(header, mode, exc, known)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                # The first attempt skips the look-up of MSH-10: a resend is rare, and the
                # unique (sender, MSH-10) row inserted with the change catches it anyway
                # (IntegrityError, all rolled back); the next attempt then looks it up.
                return await self._apply(
                    message, feed_endpoint, mode, before_commit, look_up=attempt > 1
                )
            except Hl7Error as error:
                return self._reply(header, mode, error, known)
            except IntegrityError as exc:
                # Lost a race: the same MSH-10 (answered from the stored ACK on retry) or the
                # same new appointment on another connection (applied as an update on retry).
                if attempt == _ATTEMPTS:
                    return self._temporary(header, mode, exc, known)
            except DBAPIError as exc:
                if not exc.connection_invalidated and attempt < _ATTEMPTS and _transient(exc):
                    continue
                return self._temporary(header, mode, exc, known)
            except OpenVisitError as error:
                if error.status_code in (401, 403):
                    raise  # the HTTPS signature check refused it: not an HL7 answer
                return self._temporary(header, mode, error, known)
            except Exception as exc:
                return self._temporary(header, mode, exc, known)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _endpoint(self, header: MshHeader, *, endpoint_id: uuid.UUID | None) -> FeedEndpoint:
        if endpoint_id is None:
            return await self.directory.match(header)
        found = await self.directory.get(endpoint_id)
        if found is None:
            raise Hl7ApplicationError(f"there is no OpenVisit endpoint {endpoint_id}", hl7_code=204)
        self.directory.check(found, header)
        return found

    async def _apply(
        self,
        message: SiuMessage,
        feed_endpoint: FeedEndpoint,
        mode: AckMode,
        before_commit: BeforeCommit | None,
        *,
        look_up: bool,
    ) -> FeedReply:
        header = message.header
        key = sender_key(header, endpoint_id=feed_endpoint.id)
        event = str(message.event)
        async with self.app.transaction() as session:
            if look_up:
                stored = await repository.inbound_message(
                    session, sender=key, control_id=message.control_id
                )
                if stored is not None:
                    if before_commit is not None:
                        await before_commit(session)
                    ack: bytes | None = stored.ack
                    if not (mode.should_respond(None) and stored.ack):
                        ack = None
                    return FeedReply(
                        ack,
                        _ack_code(stored.ack_code),
                        message.control_id,
                        event,
                        feed_endpoint.id,
                        duplicate=True,
                    )
            if before_commit is not None:
                await before_commit(session)
            code = mode.response_code(None)
            ack = self._ack(header, code=code)
            session.add(
                InboundMessage(
                    sender=key, control_id=message.control_id, event=event, ack_code=code, ack=ack
                )
            )
            # The cached endpoint joins the session's identity map without a query, so code
            # called from here (notifications) that looks the endpoint up reads no row again.
            endpoint = await session.merge(feed_endpoint.endpoint, load=False)
            await apply_siu(session, app=self.app, endpoint=endpoint, message=message)
        # Committed: only now may the sender hear that the message is safe with us.
        return FeedReply(
            ack if mode.should_respond(None) else None,
            code,
            message.control_id,
            event,
            feed_endpoint.id,
        )

    def _reply(
        self,
        header: MshHeader,
        mode: AckMode,
        error: Hl7Error,
        endpoint_id: uuid.UUID | None = None,
    ) -> FeedReply:
        code = mode.response_code(error)
        ack = self._ack(header, code=code, error=error) if mode.should_respond(error) else None
        return FeedReply(
            ack,
            code,
            header.control_id or None,
            header.trigger_event or None,
            endpoint_id,
            temporary=not error.permanent,
        )

    def _temporary(
        self,
        header: MshHeader,
        mode: AckMode,
        exc: BaseException,
        endpoint_id: uuid.UUID | None = None,
    ) -> FeedReply:
        # The exception text may quote SQL parameters or field values (PHI): log its type and
        # where it was raised, never its message.
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else None
        log.error(
            "hl7_message_failed",
            error_type=type(exc).__name__,
            where=where,
            control_id=header.control_id or None,
        )
        return self._reply(header, mode, TemporaryFailure(), endpoint_id)

    def _fallback(self, raw: bytes, error: Hl7Error) -> FeedReply:
        settings = self.app.settings
        ack = build_fallback_ack(
            raw,
            error=error,
            code="AR",
            control_id=new_control_id(),
            now=datetime.now(UTC),
            sending_application=settings.hl7_ack_application,
            sending_facility=settings.hl7_ack_facility,
        )
        return FeedReply(ack, "AR")


def _ack_code(value: str) -> AckCode:
    codes: dict[str, AckCode] = {
        "AA": "AA",
        "AE": "AE",
        "AR": "AR",
        "CA": "CA",
        "CE": "CE",
        "CR": "CR",
    }
    return codes.get(value, "AA")


def _transient(exc: DBAPIError) -> bool:
    """Deadlocks, serialisation failures and SQLite's busy lock are worth one more try."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if sqlstate in ("40001", "40P01"):
        return True
    return "database is locked" in str(exc.orig)


def new_control_id() -> str:
    """A fresh MSH-10 for an ACK: 20 characters, the limit of v2.3-v2.5 (ST 20)."""
    return "OV" + uuid.uuid4().hex[:18].upper()
