"""SMPP 3.4 submit through ``smpplib``: one bound transmitter per worker process, kept open.

**Connection.** Each worker keeps one ``bind_transmitter`` session and reuses it: SMSCs limit
and rate binds, and a bind per message would cost two round trips. Sends in the process take
turns on it (a lock; ``smpplib`` is blocking, so calls run in a thread). A session idle for
longer than :data:`IDLE_CHECK` is probed with ``enquire_link`` before use, so a connection the
SMSC dropped while idle is replaced *before* a message is written into it, not after.

**Receipts and replies** go to a separate, long-lived ``bind_receiver`` held by the web role
(:mod:`.receiver`). Keeping them apart means a worker that dies mid-batch does not take its
receipts with it: the SMSC routes them to the receiver, which records them.

**Exactly-once.** SMPP has no idempotent submit, so an unknown outcome (the submit was
written, no ``submit_sm_resp`` came back) is reconciled through delivery receipts: every
submit carries a 16-bit ``user_message_reference`` derived from the job key, and the next
attempt looks for a receipt from the recipient's number with that reference. None yet: it
waits (``smpp_receipt_wait_seconds``, SMSCs hold receipts for a receiver that is not bound)
and then submits again with the same reference. Residual risk, stated plainly: if the SMSC
accepted the message but its receipt never reaches us within that wait (SMSC without
receipts, receipt lost, wait too short), the patient gets the message twice. A crash
*before* the submit is written can never duplicate (the resend is the first send).

**Long messages** go out as linked parts, one ``submit_sm`` each, in order, each after the
SMSC answered the one before, and every part asks for its own receipt. A crash between parts
leaves a message half sent: reconciliation counts the receipts (one per accepted part), waits
for the rest, and then submits only the parts that never went out, with the same
concatenation reference, so the phone joins them into the one message and no part arrives
twice or not at all.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any, ClassVar

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from openvisit.context import AppContext
from openvisit.errors import ConfigurationError, OutboundError
from openvisit.logs import get_logger
from openvisit.models import utcnow
from openvisit.notify import repository as repo
from openvisit.notify.smpp import protocol
from openvisit.notify.transport import (
    CheckLater,
    OutcomeUnknown,
    RecipientRejected,
    SendResult,
    SmsTransport,
)

log = get_logger(__name__)

IDLE_CHECK = 20.0
_C = smpplib.consts
#: submit_sm_resp statuses that mean "this destination will never work".
RECIPIENT_STATUSES = {_C.SMPP_ESME_RINVDSTADR, 0x33, 0x34}  # invalid dest, dest TON/NPI
#: Statuses worth retrying: throttling, queue full, system error, temporary app error.
PASSING_STATUSES = {_C.SMPP_ESME_RTHROTTLED, _C.SMPP_ESME_RMSGQFUL, _C.SMPP_ESME_RSYSERR,
                    _C.SMPP_ESME_RX_T_APPN, 0x45}  # 0x45 submit failed


#: smpplib logs every PDU as hex at DEBUG: numbers and message text. Never let it.
LIBRARY_LOGGER = "openvisit.notify.smpp.library"
logging.getLogger(LIBRARY_LOGGER).setLevel(logging.INFO)


def new_client(app: AppContext) -> smpplib.client.Client:
    """An unconnected smpplib client for the configured SMSC."""
    settings = app.settings
    return smpplib.client.Client(settings.smpp_host, settings.smpp_port,
                                 timeout=settings.notify_timeout_seconds,
                                 allow_unknown_opt_params=True, logger_name=LIBRARY_LOGGER)


def bind_kwargs(app: AppContext) -> dict[str, Any]:
    settings = app.settings
    return {"system_id": settings.smpp_system_id, "password": settings.smpp_password,
            "system_type": settings.smpp_system_type}


class SmppSms(SmsTransport):
    """Submits over one shared transmitter session (see the module docstring)."""

    name: ClassVar[str] = "smpp"

    def __init__(self, app: AppContext) -> None:
        if not app.settings.smpp_host or not app.settings.smpp_system_id:
            raise ConfigurationError(
                "SMS provider smpp needs OPENVISIT_SMPP_HOST and OPENVISIT_SMPP_SYSTEM_ID "
                "(and OPENVISIT_SMPP_PASSWORD)."
            )
        self.app = app
        self._lock = threading.Lock()
        self._client: smpplib.client.Client | None = None
        self._last_io = 0.0
        # Workers stop without closing transports; unbind politely when the process exits.
        atexit.register(self._close)

    async def send(
        self, *, to: str, body: str, sender: str, reference: str,
        retain_until: datetime | None = None, first_attempt_at: datetime | None = None,
    ) -> SendResult:
        return await asyncio.to_thread(self._send_blocking, to=to, body=body, sender=sender,
                                       reference=reference)

    async def reconcile(
        self, *, to: str, body: str, sender: str, reference: str, since: datetime
    ) -> list[SendResult]:
        """Receipts from ``to`` tagged with this send's reference since ``since``: one per
        accepted part. All parts: sent. Some, once the wait is over: the rest is sent now."""
        umr = str(protocol.user_message_reference(reference))
        async with self.app.transaction() as session:
            rows = await repo.receipts_by_reference(
                session, provider=self.name, recipient_hash=self.app.hasher.hash(to),
                reference=umr, since=since - timedelta(seconds=5))
        accepted = list(dict.fromkeys(row.provider_message_id for row in rows))
        parts = len(protocol.encode_parts(body, reference=int(umr))[0])
        if len(accepted) >= parts:
            return [SendResult(provider_message_id=accepted[0], parts=len(accepted))]
        wait_until = since + timedelta(seconds=self.app.settings.smpp_receipt_wait_seconds)
        if utcnow() < wait_until:
            raise CheckLater(wait_until, reason="waiting for an SMPP receipt")
        if not accepted:
            return []
        # Parts 1..k were taken (one receipt each), the rest never went out: finish the
        # message rather than send it all again.
        await asyncio.to_thread(self._send_blocking, to=to, body=body, sender=sender,
                                reference=reference, first_part=len(accepted))
        log.info("smpp_message_completed", parts=parts, resent=parts - len(accepted))
        return [SendResult(provider_message_id=accepted[0], parts=parts)]

    async def aclose(self) -> None:
        atexit.unregister(self._close)
        await asyncio.to_thread(self._close)

    # ------------------------------------------------------------------ blocking side

    def _send_blocking(self, *, to: str, body: str, sender: str, reference: str,
                       first_part: int = 0) -> SendResult:
        """Submit the parts of ``body`` from ``first_part`` (0-based) on."""
        umr = protocol.user_message_reference(reference)
        parts, coding, esm_class = protocol.encode_parts(body, reference=umr)
        src_ton, src_npi, src = protocol.address(sender)
        dst_ton, dst_npi, dst = protocol.address(to)
        ids: list[str] = []
        with self._lock:
            client = self._bound()
            for index, part in enumerate(parts[first_part:], start=first_part):
                try:
                    pdu = client.send_message(
                        source_addr_ton=src_ton, source_addr_npi=src_npi, source_addr=src,
                        dest_addr_ton=dst_ton, dest_addr_npi=dst_npi, destination_addr=dst,
                        short_message=part, data_coding=coding, esm_class=esm_class,
                        registered_delivery=protocol.RECEIPT_ON_FINAL,
                        user_message_reference=umr,
                    )
                except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError,
                        OSError) as exc:
                    self._drop()
                    if index == 0:
                        raise OutboundError("The SMSC connection failed before the message "
                                            "was written; it will be retried.") from exc
                    raise OutcomeUnknown("The SMSC connection failed mid-message.") from exc
                try:
                    resp = self._response(client, pdu.sequence)
                except (TimeoutError, smpplib.exceptions.ConnectionError,
                        smpplib.exceptions.PDUError, OSError) as exc:
                    self._drop()
                    raise OutcomeUnknown("The SMSC did not answer a submit_sm.") from exc
                if resp.status != _C.SMPP_ESME_ROK:
                    if index:
                        raise OutcomeUnknown(f"The SMSC refused part {index + 1} "
                                             f"(status 0x{resp.status:x}).")
                    raise _classify(int(resp.status))
                ids.append(_text(resp.message_id))
        return SendResult(provider_message_id=ids[0], parts=len(ids))

    def _bound(self) -> smpplib.client.Client:
        if self._client is not None and time.monotonic() - self._last_io > IDLE_CHECK:
            try:
                probe = smpplib.smpp.make_pdu("enquire_link", client=self._client)
                self._client.send_pdu(probe)
                self._response(self._client, probe.sequence, command="enquire_link_resp")
            except Exception:  # any failure: the session is gone, open a new one
                self._drop()
        if self._client is None:
            client = new_client(self.app)
            try:
                client.connect()
                client.bind_transmitter(**bind_kwargs(self.app))
            except smpplib.exceptions.PDUError as exc:
                self._close_quietly(client)
                # Retried with backoff: credentials fixed at 3 a.m. should still send.
                raise OutboundError(f"The SMSC refused our bind ({exc.args[0]}); check "
                                    "OPENVISIT_SMPP_SYSTEM_ID and OPENVISIT_SMPP_PASSWORD.",
                                    permanent=False) from exc
            except (smpplib.exceptions.ConnectionError, OSError) as exc:
                self._close_quietly(client)
                raise OutboundError("The SMSC cannot be reached.", permanent=False) from exc
            self._client = client
            log.info("smpp_transmitter_bound")
        self._last_io = time.monotonic()
        return self._client

    def _response(self, client: smpplib.client.Client, sequence: int, *,
                  command: str = "submit_sm_resp") -> Any:
        """Read PDUs until the response to ``sequence``, answering the SMSC's own probes."""
        deadline = time.monotonic() + self.app.settings.notify_timeout_seconds
        while time.monotonic() < deadline:
            try:
                pdu = client.read_pdu()
            except TimeoutError as exc:  # socket.timeout
                raise TimeoutError("no SMPP response") from exc
            self._last_io = time.monotonic()
            if pdu.command == "enquire_link":
                answer = smpplib.smpp.make_pdu("enquire_link_resp", client=client)
                answer.sequence = pdu.sequence
                client.send_pdu(answer)
            elif pdu.command in (command, "generic_nack") and pdu.sequence == sequence:
                return pdu
        raise TimeoutError("no SMPP response")

    def _drop(self) -> None:
        if self._client is not None:
            self._close_quietly(self._client)
            self._client = None

    @staticmethod
    def _close_quietly(client: smpplib.client.Client) -> None:
        try:
            client.disconnect()
        except Exception:  # closing a broken socket: nothing left to do
            log.debug("smpp_disconnect_failed")

    def _close(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.unbind()
                except Exception:  # unbind is a courtesy; the socket closes below anyway
                    log.debug("smpp_unbind_failed")
                self._drop()


def _text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _classify(status: int) -> OutboundError:
    description = _C.DESCRIPTIONS.get(status, "unknown status")
    if status in RECIPIENT_STATUSES:
        return RecipientRejected(f"The SMSC refused the destination ({description}).")
    if status in PASSING_STATUSES:
        return OutboundError(f"The SMSC asked us to retry ({description}).", permanent=False)
    return OutboundError(f"The SMSC refused the message ({description}, 0x{status:x}).",
                         permanent=True)


def sms_transport(app: AppContext) -> SmsTransport:
    return SmppSms(app)
