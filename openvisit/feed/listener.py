"""The MLLP listener: the server layer over :class:`~openvisit.hl7v2.MllpDecoder` and
:class:`~openvisit.feed.intake.SiuFeed`.

HL7 v2.5.1 Appendix C.4 (MLLP Release 1: ``0x0B`` message ``0x1C 0x0D``) and Ch. 2 §2.9
(acknowledgements). Three layers, each testable alone: framing (``MllpDecoder``), message
(``SiuFeed.handle``: raw bytes → ACK), and this module (sockets, timeouts, TLS, shutdown).

Interface engines keep one connection open for days and send messages one at a time, waiting
for each ACK; several may connect at once. Every connection is served in order. Nothing a
client does ends the listener: garbage bytes are skipped by the decoder, an oversize frame is
answered AR and discarded. Resources stay bounded whatever a client does (issue 11):

- a frame must arrive whole within ``mllp_frame_timeout_seconds`` of its first byte (a
  deadline for the frame, not for each read: one byte a second cannot hold a connection);
- a connection that completes no message for ``mllp_idle_timeout_seconds`` is closed; bytes
  outside frames (noise) do not count as activity;
- one client address holds at most ``mllp_max_connections_per_peer`` connections: a new one
  past that replaces the address's longest-idle connection, or is refused when all are busy,
  so a flood from one address never locks another sender out of ``mllp_max_connections``.

The ACK of a message goes out only after its transaction committed (see :mod:`.intake`), so a
crash between receiving and answering makes the sender resend, and the resend is applied
exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from openvisit.context import AppContext
from openvisit.errors import ConfigurationError
from openvisit.feed.intake import SiuFeed, new_control_id
from openvisit.hl7v2 import (
    Hl7ParseError,
    MllpDecoder,
    MllpError,
    MllpFrameTooLarge,
    build_fallback_ack,
    encode_frame,
)
from openvisit.logs import get_logger
from openvisit.models import utcnow

log = get_logger(__name__)

#: How long a stopping listener lets connections finish the message they are on.
_DRAIN_SECONDS = 10.0
_READ_CHUNK = 64 * 1024


def tls_context(*, cert: str, key: str = "", ca: str = "") -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+) from PEM files; with ``ca`` a client certificate signed
    by it is required. Raises :class:`ConfigurationError` naming the file that failed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"OPENVISIT_MLLP_TLS_CERT/KEY ({cert}) could not be loaded: {exc}"
        ) from exc
    if ca:
        if not Path(ca).is_file():
            raise ConfigurationError(f"OPENVISIT_MLLP_TLS_CA names {ca!r}, which is not a file.")
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"OPENVISIT_MLLP_TLS_CA ({ca}) could not be loaded: {exc}"
            ) from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass(slots=True)
class _Connection:
    """What the listener knows of one connection: its address and whether it is busy."""

    host: str | None
    #: Answering a message: a stopping listener lets it finish.
    answering: bool = False
    #: In the middle of a frame or of answering one: not replaced by a newcomer.
    busy: bool = False
    #: Event-loop time of its last complete message (or of its opening).
    last_active: float = 0.0


class MllpListener:
    """Accepts MLLP connections and answers each message with its ACK."""

    def __init__(self, app: AppContext, *, feed: SiuFeed | None = None) -> None:
        settings = app.settings
        self.app = app
        self.feed = feed or SiuFeed(app)
        self.idle_timeout = settings.mllp_idle_timeout_seconds
        self.frame_timeout = settings.mllp_frame_timeout_seconds
        self.max_frame_bytes = settings.mllp_max_frame_bytes
        self.max_connections = settings.mllp_max_connections
        self.max_per_peer = max(1, settings.mllp_max_connections_per_peer)
        self.stopping = False
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        #: Connections accepted so far, admitted or refused (for metrics and tests).
        self.accepted = 0

    @property
    def open_connections(self) -> int:
        """Connections being served now."""
        return len(self._connections)

    @property
    def busy_connections(self) -> int:
        """Connections in the middle of a frame or of answering one."""
        return sum(1 for c in self._connections.values() if c.busy)

    def _admit(self, host: str | None) -> str | None:
        """Make room for a connection from ``host``; returns why it is refused, or ``None``."""
        if self.stopping:
            return "stopping"
        mine = [(t, c) for t, c in self._connections.items() if c.host == host]
        if len(mine) >= self.max_per_peer:
            idle = [(c.last_active, t) for t, c in mine if not c.busy]
            if not idle:
                return "per_peer_limit"
            _, oldest = min(idle, key=lambda pair: pair[0])
            # Counted out now: its task ends on its own when the cancellation reaches it.
            self._connections.pop(oldest, None)
            oldest.cancel()
            log.info("mllp_connection_replaced", host=host, open=len(mine))
        if len(self._connections) >= self.max_connections:
            return "limit"
        return None

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client until it disconnects, times out or the listener stops."""
        task = asyncio.current_task()
        assert task is not None
        self.accepted += 1
        peer, host = _peer(writer), _host(writer)
        refused = self._admit(host)
        if refused is not None:
            log.warning(
                "mllp_connection_refused", peer=peer, reason=refused, open=len(self._connections)
            )
            await _close(writer)
            return
        state = _Connection(host, last_active=asyncio.get_running_loop().time())
        self._connections[task] = state
        log.info("mllp_connected", peer=peer)
        try:
            await self._serve(reader, writer, state)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # one broken connection must never take the listener down
            log.error("mllp_connection_failed", peer=peer, error_type=type(exc).__name__)
        finally:
            self._connections.pop(task, None)
            await _close(writer)
            log.info("mllp_disconnected", peer=peer)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _Connection
    ) -> None:
        loop = asyncio.get_running_loop()
        decoder = MllpDecoder(max_frame_bytes=self.max_frame_bytes)
        idle_deadline = loop.time() + self.idle_timeout
        frame_deadline: float | None = None
        while not self.stopping:
            in_frame = decoder.in_frame
            deadline = frame_deadline if in_frame and frame_deadline is not None else idle_deadline
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                chunk = await asyncio.wait_for(reader.read(_READ_CHUNK), remaining)
            except TimeoutError:
                log.info("mllp_timeout", peer=_peer(writer), mid_frame=in_frame)
                return
            except (ConnectionError, ssl.SSLError, OSError):
                return
            if not chunk:
                if decoder.in_frame:
                    log.info("mllp_disconnected_mid_frame", peer=_peer(writer))
                return
            items = _frames(decoder, chunk)
            for item in items:
                state.busy = state.answering = True
                # At debug level: where a message is between its arrival and its ACK (the
                # tests of a crash in that window wait for it).
                log.debug("mllp_frame_received", peer=_peer(writer))
                try:
                    ack = await self._answer(item)
                    if ack is not None:
                        writer.write(ack)
                        await writer.drain()
                except (ConnectionError, ssl.SSLError, OSError):
                    # The sender left before its ACK: what was committed stays, and its resend
                    # is answered from the stored ACK.
                    log.info("mllp_ack_not_delivered", peer=_peer(writer))
                    return
                finally:
                    state.busy = state.answering = False
                if self.stopping:
                    return
            now = loop.time()
            if items:
                # A complete message is activity; noise and partial frames are not.
                state.last_active = now
                idle_deadline = now + self.idle_timeout
                frame_deadline = None
            if decoder.in_frame and frame_deadline is None:
                # The whole frame must arrive by then, however slowly its bytes trickle in;
                # a restart (a new start block) does not move the deadline.
                frame_deadline = now + self.frame_timeout
            elif not decoder.in_frame:
                frame_deadline = None
            state.busy = decoder.in_frame

    async def _answer(self, item: bytes | MllpFrameTooLarge) -> bytes | None:
        if isinstance(item, MllpFrameTooLarge):
            log.warning("mllp_frame_too_large", limit=item.limit)
            ack = build_fallback_ack(
                b"",
                error=Hl7ParseError(item.message, hl7_code=207),
                code="AR",
                control_id=new_control_id(),
                now=utcnow(),
                sending_application=self.app.settings.hl7_ack_application,
                sending_facility=self.app.settings.hl7_ack_facility,
            )
        else:
            reply = await self.feed.handle(item, transport="mllp", grouped=True)
            if reply.ack is None:
                return None
            ack = reply.ack
        try:
            return encode_frame(ack)
        except MllpError:
            log.error("mllp_ack_unframeable")
            return None

    async def stop(self) -> None:
        """Stop reading: idle connections close now, busy ones after their current message."""
        self.stopping = True
        for task, state in list(self._connections.items()):
            if not state.answering:
                task.cancel()
        pending = list(self._connections)
        if pending:
            _done, still = await asyncio.wait(pending, timeout=_DRAIN_SECONDS)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)


def _frames(decoder: MllpDecoder, chunk: bytes) -> list[bytes | MllpFrameTooLarge]:
    """Every complete frame (or oversize marker) the chunk finishes, in stream order."""
    items: list[bytes | MllpFrameTooLarge] = []
    data = chunk
    while True:
        try:
            got = decoder.feed(data)
        except MllpFrameTooLarge as exc:
            items.append(exc)
            data = b""
            continue
        if not got:
            return items
        items.extend(got)
        data = b""


def _host(writer: asyncio.StreamWriter) -> str | None:
    """The client's address without its port: what the per-address cap counts."""
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and info:
        return str(info[0])
    return None


def _peer(writer: asyncio.StreamWriter) -> str | None:
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return f"{info[0]}:{info[1]}"
    return None


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), timeout=2)


async def serve_mllp(
    ctx: AppContext,
    *,
    stop: asyncio.Event,
    host: str | None = None,
    port: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    started: asyncio.Event | None = None,
    listener: MllpListener | None = None,
) -> None:
    """Listen for MLLP on ``host:port`` (default: settings) until ``stop`` is set.

    ``listener`` serves the connections (default: a new :class:`MllpListener`; a caller that
    passes its own can watch its counters). TLS comes from ``ssl_context`` or the
    ``mllp_tls_*`` settings (plain TCP when neither).
    ``started`` is set once the port is bound, so a caller can hold back "ready" until then.
    Raises :class:`ConfigurationError` for unreadable TLS files and for a port that cannot be
    bound (naming the address and what to do); nothing a client sends ends it.
    """
    settings = ctx.settings
    if ssl_context is None and settings.mllp_tls_cert:
        ssl_context = tls_context(
            cert=settings.mllp_tls_cert, key=settings.mllp_tls_key, ca=settings.mllp_tls_ca
        )
    listener = listener or MllpListener(ctx)
    bind_host = host or settings.mllp_host
    bind_port = settings.mllp_port if port is None else port
    try:
        server = await asyncio.start_server(
            listener.connection,
            bind_host,
            bind_port,
            ssl=ssl_context,
            ssl_handshake_timeout=30 if ssl_context else None,
            reuse_address=True,
            backlog=256,
            reuse_port=settings.mllp_reuse_port or None,
        )
    except OSError as exc:
        log.error("mllp_bind_failed", host=bind_host, port=bind_port, errno=exc.errno)
        raise ConfigurationError(
            f"The MLLP listener cannot listen on {bind_host}:{bind_port} "
            f"({exc.strerror or exc}). Free the port, choose another one with "
            "OPENVISIT_MLLP_PORT (openvisit serve --mllp-port), or run openvisit serve "
            "--no-mllp to go without the HL7 scheduling feed."
        ) from exc
    if started is not None:
        started.set()
    bound = [s.getsockname()[1] for s in server.sockets]
    log.info(
        "mllp_listening",
        host=bind_host,
        port=bound[0] if bound else bind_port,
        tls=ssl_context is not None,
        client_certificates=bool(ssl_context and ssl_context.verify_mode == ssl.CERT_REQUIRED),
    )
    try:
        await stop.wait()
    finally:
        server.close()
        await listener.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), timeout=5)
        log.info("mllp_stopped")
