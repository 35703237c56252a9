"""The device test's real test call: a server-side WebRTC peer that sends back what it gets.

The browser offers its camera and microphone; :class:`LoopbackCalls` answers with a peer
(aiortc, the ``devicetest`` extra) that returns each received track to the sender, so the
patient sees and hears themselves *through the network*: ICE (host, STUN or TURN relay as
configured), DTLS-SRTP, codecs and the browser's decoder all take part, as in a visit. The
answer is complete (non-trickle): the server gathers its candidates before answering.

Each call costs a decode and an encode per video frame, so a web process holds at most
``devicetest_max_calls`` at once and ends each after ``devicetest_call_seconds``; a caller
beyond the limit gets :class:`CallsBusy` (HTTP 503, "try again in a minute"). A slot is
taken when the offer arrives, by a check-and-reserve with no ``await`` in between (so
concurrent offers cannot all pass the check while the first ones are still negotiating),
and given back on every way out: answered then ended, refused, failed or cancelled. Nothing
a call carries is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openvisit.config import Settings
from openvisit.errors import InvalidInput, OpenVisitError
from openvisit.logs import get_logger
from openvisit.visits.turn import turn_credentials

if TYPE_CHECKING:  # types only: aiortc itself is imported by aiortc() below
    import aiortc as rtc_types
    import aiortc.contrib.media as media_types

log = get_logger(__name__)


#: What a refused caller is told to wait (``Retry-After``).
RETRY_AFTER_SECONDS = 60


class CallsBusy(OpenVisitError):
    status_code = 503
    code = "devicetest_busy"


class CallsUnavailable(OpenVisitError):
    status_code = 503
    code = "devicetest_unavailable"


@dataclass(frozen=True)
class _Aiortc:
    """What the loop-back uses of aiortc (the optional ``devicetest`` extra)."""

    RTCConfiguration: type[rtc_types.RTCConfiguration]
    RTCIceServer: type[rtc_types.RTCIceServer]
    RTCPeerConnection: type[rtc_types.RTCPeerConnection]
    RTCSessionDescription: type[rtc_types.RTCSessionDescription]
    MediaRelay: type[media_types.MediaRelay]


def aiortc() -> _Aiortc:
    """The one import of aiortc; raises :class:`CallsUnavailable` without the extra."""
    try:
        from aiortc import (
            RTCConfiguration,
            RTCIceServer,
            RTCPeerConnection,
            RTCSessionDescription,
        )
        from aiortc.contrib.media import MediaRelay
    except ImportError as exc:  # the devicetest extra is not installed
        raise CallsUnavailable(
            "This OpenVisit was installed without the device-test call "
            "(pip install 'openvisit[devicetest]')."
        ) from exc
    return _Aiortc(RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription,
                   MediaRelay)


def server_ice_servers(settings: Settings, *, call_id: uuid.UUID) -> list[Any]:
    """The server peer's STUN/TURN servers (aiortc ``RTCIceServer``), from the settings the
    browsers use, with TURN REST credentials of its own."""
    ice_server = aiortc().RTCIceServer
    servers = []
    if settings.stun_urls:
        servers.append(ice_server(urls=list(settings.stun_urls)))
    if settings.turn_urls and settings.turn_secret:
        username, credential = turn_credentials(
            settings.turn_secret, user=f"devicetest-{call_id}",
            ttl_seconds=settings.turn_ttl_seconds,
        )
        servers.append(
            ice_server(urls=list(settings.turn_urls), username=username, credential=credential)
        )
    return servers


class LoopbackCalls:
    """The loop-back peers of one web process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_calls = settings.devicetest_max_calls
        self.max_per_holder = settings.devicetest_calls_per_address
        self.seconds = settings.devicetest_call_seconds
        self._calls: dict[uuid.UUID, tuple[Any, asyncio.Task[None]]] = {}
        #: Calls whose offer is being answered: they hold a slot before they are in _calls.
        self._starting: set[uuid.UUID] = set()
        #: Who holds each slot (a client address key), so one address cannot take them all.
        self._holders: dict[uuid.UUID, str] = {}
        self._closing: set[asyncio.Task[None]] = set()
        #: The most slots ever held at once (for operators' metrics and the tests).
        self.peak = 0

    @property
    def held(self) -> int:
        """Slots in use: calls running plus offers being answered."""
        return len(self._calls) + len(self._starting)

    def _reserve(self, holder: str) -> uuid.UUID:
        """Take a slot or raise :class:`CallsBusy` (synchronous: nothing can interleave)."""
        mine = sum(1 for h in self._holders.values() if h == holder)
        if self.held >= self.max_calls or mine >= self.max_per_holder:
            log.warning("devicetest_call_refused_busy", active=self.held,
                        from_this_address=mine)
            raise CallsBusy(
                "Too many device tests are running right now. Please try again in a minute.",
                permanent=False, details={"retry_after_seconds": RETRY_AFTER_SECONDS},
            )
        call_id = uuid.uuid4()
        self._starting.add(call_id)
        self._holders[call_id] = holder
        self.peak = max(self.peak, self.held)
        return call_id

    async def answer(self, offer_sdp: str, *, holder: str = "") -> str:
        """Answer the browser's complete SDP offer; the call runs until either side hangs up,
        the connection fails, or ``devicetest_call_seconds`` pass.

        ``holder`` (the client's address key) may hold at most
        ``devicetest_calls_per_address`` slots at once.
        Raises :class:`CallsBusy` when every slot is taken, :class:`CallsUnavailable`
        without aiortc, :class:`InvalidInput` for an offer aiortc cannot use.
        """
        rtc = aiortc()
        call_id = self._reserve(holder)
        try:
            return await self._start(call_id, offer_sdp, rtc)
        except BaseException:
            self._holders.pop(call_id, None)
            raise
        finally:
            # Answered (now in _calls) or not, the reservation ends here, with no await
            # between the insert into _calls and this line.
            self._starting.discard(call_id)

    async def _start(self, call_id: uuid.UUID, offer_sdp: str, rtc: _Aiortc) -> str:
        pc = rtc.RTCPeerConnection(
            rtc.RTCConfiguration(iceServers=server_ice_servers(self.settings, call_id=call_id))
        )
        relay = rtc.MediaRelay()

        @pc.on("track")
        def _echo(track: Any) -> None:
            pc.addTrack(relay.subscribe(track))

        @pc.on("connectionstatechange")
        async def _state() -> None:
            log.info("devicetest_call_state", call_id=str(call_id), state=pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self._end(call_id)

        try:
            await pc.setRemoteDescription(rtc.RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            log.info("devicetest_offer_refused", error_type=type(exc).__name__)
            raise InvalidInput(
                "The browser's call offer could not be used. Reload the page and try again."
            ) from exc
        except BaseException:
            # Cancelled (the page went away mid-answer): close the peer in the background.
            closing = asyncio.get_running_loop().create_task(pc.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            raise
        self._calls[call_id] = (pc, asyncio.create_task(self._expire(call_id)))
        log.info("devicetest_call_started", call_id=str(call_id), active=len(self._calls))
        return str(pc.localDescription.sdp)

    async def _expire(self, call_id: uuid.UUID) -> None:
        await asyncio.sleep(self.seconds)
        await self._end(call_id, cancel_timer=False)

    async def _end(self, call_id: uuid.UUID, *, cancel_timer: bool = True) -> None:
        entry = self._calls.pop(call_id, None)
        self._holders.pop(call_id, None)
        if entry is None:
            return
        pc, timer = entry
        if cancel_timer:
            timer.cancel()
        # Tracked from the moment the call leaves _calls (no await in between), so aclose()
        # waits for a close that a state change began, rather than the process ending it
        # halfway with the peer's sockets still open.
        closing = asyncio.ensure_future(pc.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        with contextlib.suppress(Exception):
            await asyncio.shield(closing)  # the waiter cancelled (a timer), the close goes on
        log.info("devicetest_call_ended", call_id=str(call_id), active=len(self._calls))

    async def aclose(self) -> None:
        """End every call (process shutdown)."""
        for call_id in list(self._calls):
            await self._end(call_id)
        for closing in list(self._closing):
            with contextlib.suppress(Exception):
                await closing
