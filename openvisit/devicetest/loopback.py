"""The device test's real test call: a server-side WebRTC peer that sends back what it gets.

The browser offers its camera and microphone; :class:`LoopbackCalls` answers with a peer
(aiortc, the ``devicetest`` extra) that returns each received track to the sender, so the
patient sees and hears themselves *through the network*: ICE (host, STUN or TURN relay as
configured), DTLS-SRTP, codecs and the browser's decoder all take part, as in a visit. The
answer is complete (non-trickle): the server gathers its candidates before answering.

Each call costs a decode and an encode per video frame, so a web process holds at most
``devicetest_max_calls`` at once and ends each after ``devicetest_call_seconds``; a caller
beyond the limit gets :class:`CallsBusy` (HTTP 503, "try again in a minute"). Nothing a call
carries is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from openvisit.config import Settings
from openvisit.errors import InvalidInput, OpenVisitError
from openvisit.logging import get_logger
from openvisit.visits.turn import turn_credentials

log = get_logger(__name__)


class CallsBusy(OpenVisitError):
    status_code = 503
    code = "devicetest_busy"


class CallsUnavailable(OpenVisitError):
    status_code = 503
    code = "devicetest_unavailable"


def server_ice_servers(settings: Settings, *, call_id: uuid.UUID) -> list[Any]:
    """The server peer's STUN/TURN servers (aiortc ``RTCIceServer``), from the settings the
    browsers use, with TURN REST credentials of its own."""
    from aiortc import RTCIceServer

    servers = []
    if settings.stun_urls:
        servers.append(RTCIceServer(urls=list(settings.stun_urls)))
    if settings.turn_urls and settings.turn_secret:
        username, credential = turn_credentials(
            settings.turn_secret, user=f"devicetest-{call_id}",
            ttl_seconds=settings.turn_ttl_seconds,
        )
        servers.append(
            RTCIceServer(urls=list(settings.turn_urls), username=username, credential=credential)
        )
    return servers


class LoopbackCalls:
    """The loop-back peers of one web process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_calls = settings.devicetest_max_calls
        self.seconds = settings.devicetest_call_seconds
        self._calls: dict[uuid.UUID, tuple[Any, asyncio.Task[None]]] = {}

    async def answer(self, offer_sdp: str) -> str:
        """Answer the browser's complete SDP offer; the call runs until either side hangs up,
        the connection fails, or ``devicetest_call_seconds`` pass."""
        if len(self._calls) >= self.max_calls:
            log.warning("devicetest_call_refused_busy", active=len(self._calls))
            raise CallsBusy(
                "Too many device tests are running right now. Please try again in a minute.",
                permanent=False,
            )
        try:
            from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
            from aiortc.contrib.media import MediaRelay
        except ImportError as exc:  # the devicetest extra is not installed
            raise CallsUnavailable(
                "This OpenVisit was installed without the device-test call "
                "(pip install 'openvisit[devicetest]')."
            ) from exc
        call_id = uuid.uuid4()
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=server_ice_servers(self.settings, call_id=call_id))
        )
        relay = MediaRelay()

        @pc.on("track")
        def _echo(track: Any) -> None:
            pc.addTrack(relay.subscribe(track))

        @pc.on("connectionstatechange")
        async def _state() -> None:
            log.info("devicetest_call_state", call_id=str(call_id), state=pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self._end(call_id)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            log.info("devicetest_offer_refused", error_type=type(exc).__name__)
            raise InvalidInput(
                "The browser's call offer could not be used. Reload the page and try again."
            ) from exc
        self._calls[call_id] = (pc, asyncio.create_task(self._expire(call_id)))
        log.info("devicetest_call_started", call_id=str(call_id), active=len(self._calls))
        return str(pc.localDescription.sdp)

    async def _expire(self, call_id: uuid.UUID) -> None:
        await asyncio.sleep(self.seconds)
        await self._end(call_id, cancel_timer=False)

    async def _end(self, call_id: uuid.UUID, *, cancel_timer: bool = True) -> None:
        entry = self._calls.pop(call_id, None)
        if entry is None:
            return
        pc, timer = entry
        if cancel_timer:
            timer.cancel()
        with contextlib.suppress(Exception):
            await pc.close()
        log.info("devicetest_call_ended", call_id=str(call_id), active=len(self._calls))

    async def aclose(self) -> None:
        """End every call (process shutdown)."""
        for call_id in list(self._calls):
            await self._end(call_id)
