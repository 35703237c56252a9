"""One inbound HL7 message in, its ACK out: the message layer shared by MLLP and HTTPS.

HL7 v2.5.1 Ch. 2 §2.9.2-2.9.3 (original and enhanced acknowledgement), §2.10.1 (MSH-10 as the
duplicate-detection key), §2.15.8 (MSA); Ch. 10 (SIU). The decisions, in order:

1. MSH unreadable → AR through :func:`~openvisit.hl7v2.build_fallback_ack`.
2. MSH-3/MSH-4 listed by no endpoint (or not by the endpoint an HTTPS caller named) → AR.
3. SIU unparseable → AE, or AR for an unsupported type/event/version/processing id
   (``Hl7Error.rejects``), with ERR and a readable MSA-3.
4. MSH-10 already accepted from this sender → the stored ACK again, nothing applied.
5. Otherwise apply + record the MSH-10 with its ACK in ONE transaction, and answer AA (CA in
   enhanced mode) only after that commit. The MLLP listener lets messages that are ready at
   the same moment on different connections share that transaction (group commit,
   :mod:`.group`); each still hears its ACK only after the commit that holds it.
6. Anything failing on our side (database down, deadlock, lock timeout, a bug while
   applying) → AE "temporary error, resend later"; nothing is committed, so the resend is
   applied exactly once.

A message that can never be stored is refused before the database sees it (issue 11, item
7): MSH-10/MSH-3/MSH-4 that cannot be recorded → AR, a kept value too long, holding NUL or
undecodable bytes → AE naming the field (:mod:`.validation`). Should the database still
refuse a value (SQLSTATE class 22, a data exception), that is answered AE as permanent too:
resending the same bytes cannot succeed, and "resend later" would block the sender for ever.

Enhanced mode (MSH-15/16 valued) is honoured through :func:`~openvisit.hl7v2.ack_mode`: commit
acks CA/CE/CR, sent only when MSH-15 asks for them. No payload is ever logged.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext
from openvisit.errors import ConfigurationError, OpenVisitError
from openvisit.feed import repository
from openvisit.feed.group import GroupCommitter
from openvisit.feed.senders import FeedEndpoint, SenderDirectory, directory_for, sender_key
from openvisit.feed.service import apply_siu_batch
from openvisit.feed.validation import check_header, check_siu
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
from openvisit.logs import get_logger
from openvisit.models import EhrEndpoint, utcnow

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


@dataclass(frozen=True, slots=True)
class Ready:
    """A message that parsed, from a known sender: all that is left is to commit it."""

    message: SiuMessage
    endpoint: FeedEndpoint
    mode: AckMode
    #: The sender's MSH-10 namespace (:func:`~.senders.sender_key`).
    key: str


class Unstorable(Hl7ApplicationError):
    """The database refused a value of the message (0357: 207): permanent, answered AE."""

    code = "hl7_unstorable"
    hl7_code = 207

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"this message cannot be stored: the database refuses one of its values "
            f"({reason}); resending it as it is will not help, so correct it in the sending "
            "system",
        )


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
        self.committer: GroupCommitter[Ready, FeedReply] = GroupCommitter(self.commit_batch)

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
        grouped: bool = False,
    ) -> FeedReply:
        """Process one message and return its :class:`FeedReply`; never raises for any input.

        ``endpoint_id`` pins the endpoint (HTTPS names it; MLLP finds it from MSH-3/MSH-4).
        ``before_commit`` runs inside the transaction both for new and for duplicate messages
        (HTTPS records the JWS ``jti`` there); whatever it raises propagates, nothing commits.
        ``grouped`` lets the message share its transaction with messages ready at the same
        moment on other connections (:class:`~.group.GroupCommitter`); its ACK still waits
        for that commit.
        """
        started = time.perf_counter()
        prepared = await self.prepare(raw, endpoint_id=endpoint_id)
        if isinstance(prepared, FeedReply):
            reply = prepared
        elif grouped and before_commit is None:
            reply = await self.committer.submit(prepared)
        else:
            reply = await self._commit_one(prepared, before_commit)
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

    async def prepare(self, raw: bytes, *, endpoint_id: uuid.UUID | None) -> Ready | FeedReply:
        """Steps 1-3: the message ready to commit, or the reply that refuses it."""
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
            check_header(header)
            message = parse_siu(
                raw, default_tz=feed_endpoint.tz, default_region=feed_endpoint.region
            )
            check_siu(message)
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
            # The parser promises Hl7ParseError; anything else is our bug, and it will fail
            # the resend the same way: permanent, so the sender's queue is not blocked.
            _log_failure("hl7_parse_failed", exc, header)
            return self._reply(
                header,
                mode,
                Hl7ApplicationError(
                    "OpenVisit could not read this message (internal error "
                    f"{type(exc).__name__}); it was not stored. Tell the OpenVisit operator, "
                    "who can see it in the log by its MSH-10"
                ),
                known,
            )
        return Ready(message, feed_endpoint, mode, sender_key(header, endpoint_id=known))

    async def commit_batch(self, batch: Sequence[Ready]) -> list[FeedReply]:
        """Commit ``batch`` in one transaction and return each message's reply, in order.

        If the shared transaction fails for any reason (a race with another process, a row
        the database refuses), it is rolled back and each message is committed on its own
        instead, so one message's trouble is never another's. Never raises.
        """
        if len(batch) == 1:
            return [await self._commit_one(batch[0], None)]
        try:
            # As for one message, MSH-10 is not looked up first: a resend in the batch fails
            # it on the unique key, and the split below answers the resend from its record.
            replies = await self._apply(batch, None, look_up=False)
            log.info("hl7_batch_committed", size=len(batch))
            return replies
        except Exception as exc:
            log.warning("hl7_batch_split", size=len(batch), error_type=type(exc).__name__)
            return [await self._commit_one(ready, None) for ready in batch]

    async def _commit_one(self, ready: Ready, before_commit: BeforeCommit | None) -> FeedReply:
        """Step 4-6 for one message in its own transaction, retrying lost races. Raises only
        what ``before_commit`` raises with status 401/403 (an HTTPS signature refusal)."""
        header, mode, known = ready.message.header, ready.mode, ready.endpoint.id
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                # The first attempt skips the look-up of MSH-10: a resend is rare, and the
                # unique (sender, MSH-10) row inserted with the change catches it anyway
                # (IntegrityError, all rolled back); the next attempt then looks it up.
                (reply,) = await self._apply([ready], before_commit, look_up=attempt > 1)
                return reply
            except Hl7Error as error:
                return self._reply(header, mode, error, known)
            except IntegrityError as exc:
                # Lost a race: the same MSH-10 (answered from the stored ACK on retry) or the
                # same new appointment on another connection (applied as an update on retry).
                if attempt == _ATTEMPTS:
                    return self._temporary(header, mode, exc, known)
            except DBAPIError as exc:
                if _refused_value(exc):
                    _log_failure("hl7_message_unstorable", exc, header)
                    return self._reply(header, mode, Unstorable(_sqlstate(exc) or "data"), known)
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
        self, batch: Sequence[Ready], before_commit: BeforeCommit | None, *, look_up: bool
    ) -> list[FeedReply]:
        """Apply and record the new messages of ``batch`` in ONE transaction; the replies
        exist only once it committed. A message accepted before (or earlier in the same
        batch) is answered with the stored ACK and applies nothing."""
        first_of: dict[tuple[str, str], int] = {}
        acks: dict[int, tuple[AckCode, bytes]] = {}
        replies: dict[int, FeedReply] = {}
        async with self.app.transaction() as session:
            if before_commit is not None:
                await before_commit(session)
            keys = [(r.key, r.message.control_id) for r in batch]
            stored = await repository.inbound_messages(session, keys) if look_up else {}
            endpoints: dict[uuid.UUID, EhrEndpoint] = {}
            items: list[tuple[EhrEndpoint, SiuMessage]] = []
            received: list[dict[str, object]] = []
            now = utcnow()
            for i, (ready, key) in enumerate(zip(batch, keys, strict=True)):
                found = stored.get(key)
                if found is not None:
                    replies[i] = _duplicate(ready, found.ack_code, found.ack)
                    continue
                if key in first_of:
                    continue  # the same message twice in one batch: answered after commit
                first_of[key] = i
                message = ready.message
                code = ready.mode.response_code(None)
                ack = self._ack(message.header, code=code)
                acks[i] = (code, ack)
                received.append(
                    {
                        "sender": ready.key,
                        "control_id": message.control_id,
                        "event": str(message.event),
                        "ack_code": code,
                        "ack": ack,
                        "received_at": now,
                    }
                )
                endpoint = endpoints.get(ready.endpoint.id)
                if endpoint is None:
                    # The cached endpoint joins the session's identity map without a query,
                    # so code called from here that looks the endpoint up reads no row again.
                    endpoint = await session.merge(ready.endpoint.endpoint, load=False)
                    endpoints[ready.endpoint.id] = endpoint
                items.append((endpoint, message))
            # The MSH-10 records go first: a resend racing in on another process fails here
            # (unique key) before any work is done.
            await repository.record_inbound(session, received)
            await apply_siu_batch(session, app=self.app, items=items, now=now)
        # Committed: only now may the senders hear that their messages are safe with us.
        result: list[FeedReply] = []
        for i, (ready, key) in enumerate(zip(batch, keys, strict=True)):
            if i in replies:
                result.append(replies[i])
            elif i in acks:
                code, ack = acks[i]
                result.append(
                    FeedReply(
                        ack if ready.mode.should_respond(None) else None,
                        code,
                        ready.message.control_id,
                        str(ready.message.event),
                        ready.endpoint.id,
                    )
                )
            else:
                code, ack = acks[first_of[key]]
                result.append(_duplicate(ready, code, ack))
        return result

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
        _log_failure("hl7_message_failed", exc, header)
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


def _duplicate(ready: Ready, code: str, ack: bytes | None) -> FeedReply:
    """The reply to a message accepted before: its stored ACK, nothing applied again."""
    if not (ready.mode.should_respond(None) and ack):
        ack = None
    return FeedReply(
        ack,
        _ack_code(code),
        ready.message.control_id,
        str(ready.message.event),
        ready.endpoint.id,
        duplicate=True,
    )


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


def _log_failure(event: str, exc: BaseException, header: MshHeader) -> None:
    # The exception text may quote SQL parameters or field values (PHI): log its type, its
    # SQLSTATE and where it was raised, never its message.
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else None
    log.error(
        event,
        error_type=type(exc).__name__,
        sqlstate=_sqlstate(exc) if isinstance(exc, DBAPIError) else None,
        where=where,
        control_id=header.control_id or None,
    )


def _sqlstate(exc: DBAPIError) -> str | None:
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return str(state) if state else None


def _refused_value(exc: DBAPIError) -> bool:
    """A data exception (SQLSTATE class 22: a value out of range, too long, a NUL byte…):
    the same message will be refused again, whatever happens to the database."""
    if isinstance(exc, DataError):
        return True
    state = _sqlstate(exc)
    return state is not None and state.startswith("22")


def _transient(exc: DBAPIError) -> bool:
    """Deadlocks, serialisation failures and SQLite's busy lock are worth one more try."""
    if _sqlstate(exc) in ("40001", "40P01"):
        return True
    return "database is locked" in str(exc.orig)


def new_control_id() -> str:
    """A fresh MSH-10 for an ACK: 20 characters, the limit of v2.3-v2.5 (ST 20)."""
    return "OV" + uuid.uuid4().hex[:18].upper()
