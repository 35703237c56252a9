"""The long-lived SMPP receiver: delivery receipts and patients' STOP/START replies.

One ``bind_receiver`` session per process that runs it (the web role, when SMPP is
configured and ``smpp_receiver`` is on; operators with many web replicas turn it off on all
but a few, since SMSCs limit binds). It runs ``smpplib``'s blocking read loop in a thread and
hands each ``deliver_sm`` to the event loop, answering ``deliver_sm_resp`` only after the
receipt or reply is committed: on any failure it answers "temporary error" (0x64), and the
SMSC delivers the PDU again later, so nothing it sent is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions

from openvisit.context import AppContext
from openvisit.logs import get_logger
from openvisit.notify import inbound
from openvisit.notify.smpp import protocol
from openvisit.notify.smpp.transport import bind_kwargs, new_client

log = get_logger(__name__)

HANDLER_TIMEOUT = 30.0
RECONNECT_MAX = 30.0


async def handle_deliver_sm(app: AppContext, delivered: protocol.Delivered) -> None:
    """Apply one understood deliver_sm (a receipt or a reply) and commit it."""
    if delivered.is_receipt:
        if delivered.message_id:
            await inbound.apply_status(
                app, provider="smpp", provider_message_id=delivered.message_id,
                status=delivered.status, tag=delivered.reference, recipient=delivered.source,
            )
        return
    await inbound.apply_reply(app, from_number=delivered.source,
                              to_number=delivered.destination, text=delivered.text)


class SmppReceiver:
    """Keeps one receiver bind open until :meth:`stop`, reconnecting with backoff."""

    def __init__(self, app: AppContext, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.bound = threading.Event()
        self._stopping = threading.Event()
        self._client: smpplib.client.Client | None = None
        self._thread = threading.Thread(target=self._run, name="smpp-receiver", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        client = self._client
        sock = getattr(client, "_socket", None) if client is not None else None
        if sock is not None:
            # shutdown() wakes the thread blocked in recv(); close() alone would not.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            client = new_client(self.app)
            client.set_message_received_handler(self._on_deliver_sm)
            try:
                client.connect()
                client.bind_receiver(**bind_kwargs(self.app))
                self._client = client
                self.bound.set()
                log.info("smpp_receiver_bound")
                delay = 0.5
                client.listen()
            except Exception as exc:  # the loop must survive anything; it reconnects
                if not self._stopping.is_set():
                    log.warning("smpp_receiver_disconnected", error_type=type(exc).__name__)
            finally:
                self.bound.clear()
                self._client = None
                with contextlib.suppress(Exception):
                    client.disconnect()
            if self._stopping.wait(delay):
                return
            delay = min(RECONNECT_MAX, delay * 2)

    def _on_deliver_sm(self, pdu: Any, **_: Any) -> int:
        try:
            delivered = protocol.parse_deliver_sm(
                esm_class=int(pdu.esm_class or 0), data_coding=int(pdu.data_coding or 0),
                source_addr=pdu.source_addr, source_addr_ton=int(pdu.source_addr_ton or 0),
                destination_addr=pdu.destination_addr,
                destination_addr_ton=int(pdu.dest_addr_ton or 0),
                short_message=pdu.short_message,
                receipted_message_id=getattr(pdu, "receipted_message_id", None),
                message_state=getattr(pdu, "message_state", None),
                user_message_reference=getattr(pdu, "user_message_reference", None),
            )
            future = asyncio.run_coroutine_threadsafe(
                handle_deliver_sm(self.app, delivered), self.loop)
            future.result(timeout=HANDLER_TIMEOUT)
        except Exception as exc:  # answer "try again later" rather than lose the PDU
            log.warning("smpp_deliver_sm_failed", error_type=type(exc).__name__)
            return int(smpplib.consts.SMPP_ESME_RX_T_APPN)
        return int(smpplib.consts.SMPP_ESME_ROK)


@contextlib.asynccontextmanager
async def running_receiver(app: AppContext) -> AsyncIterator[SmppReceiver]:
    """Run a receiver for the duration of the block (the web role's lifespan; tests)."""
    receiver = SmppReceiver(app, asyncio.get_running_loop())
    receiver.start()
    try:
        yield receiver
    finally:
        await asyncio.to_thread(receiver.stop)


