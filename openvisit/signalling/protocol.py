"""The signalling protocol: typed messages, validation and the per-connection state machine.

Pure: no web framework, no database. One JSON object per WebSocket text frame, with a
``type``. Session descriptions and ICE candidates are carried opaquely between two admitted
peers; their meaning is JSEP's (RFC 8829: offer/answer §5.2–5.3, ICE restart §3.8 and
§5.2.1) and ICE's (RFC 8445: candidates §5.1, trickle per RFC 8838, where an absent candidate
means end-of-candidates). The server never interprets SDP; it only checks sizes and who may
talk to whom.

Client → server
  ``hello``     {token, session, lang?, devices?}  first message; binds the socket to a seat
  ``ping``      {t?}                             answered with ``pong``
  ``leave``     {}                               the participant leaves the visit
  ``quality``   {rtt_ms?, jitter_ms?, packet_loss_pct?, bitrate_kbps?, frame_width?,
                 frame_height?, path?}           call quality from ``getStats()``; path is
                                                 "host" or "relay" (the selected pair)
  ``offer``     {to, sdp}        ``answer`` {to, sdp}
  ``candidate`` {to, candidate?}  ``restart`` {to}   (peer signalling: admitted only)
  ``chat``      {text}           admitted only; to every other admitted seat of the visit
  ``lobby_message`` {to, preset | text}  staff only; to one seat waiting in the lobby

Server → client
  ``welcome`` {you, ice}  ``state`` {you, visit, peers, roster?}  ``pong`` {t?}
  ``offer``/``answer``/``candidate``/``restart`` {from, from_session, …}
  ``chat`` {id, from, role, n, text, at, mine?}   ``lobby_message`` {preset | text, at}
  ``lobby_message_sent`` {to, preset | text, at}  (the sending clinician's confirmation)
  ``error`` {code, message, rejected?}   ``bye`` {reason}
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

#: Larger frames are refused before parsing (an SDP with many codecs is ~10 KB).
MAX_FRAME_BYTES = 64 * 1024
MAX_SDP_CHARS = 48 * 1024
MAX_CANDIDATE_CHARS = 1024
#: No message nests deeper than 2; deeper input is refused before decoding.
MAX_DEPTH = 16
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{8,40}$")
PEER_TYPES = frozenset({"offer", "answer", "candidate", "restart"})
LOBBY_TYPES = frozenset({"ping", "leave", "quality"})
#: Chat text is for a link, a spelling, a sentence when audio fails: not a document.
MAX_CHAT_CHARS = 1000
#: A lobby message is one short line ("running 10 minutes late").
MAX_LOBBY_TEXT_CHARS = 280
#: The lobby message presets; each page shows its own language's text for the id.
LOBBY_PRESETS = ("late_10", "late_few", "stay", "device_test")
#: C0/C1 control characters other than tab and newline, removed from typed text.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
QUALITY_FIELDS: dict[str, tuple[type, float]] = {
    "rtt_ms": (float, 60_000.0),
    "jitter_ms": (float, 60_000.0),
    "packet_loss_pct": (float, 100.0),
    "bitrate_kbps": (float, 1_000_000.0),
    "frame_width": (int, 16_384),
    "frame_height": (int, 16_384),
}


class ProtocolError(ValueError):
    """A frame that is not a valid message; ``code`` goes back to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Hello:
    token: str
    session: str
    lang: str | None = None
    #: The page's pre-join device check: "ready" (camera or microphone working) or "failed".
    devices: Literal["ready", "failed"] | None = None
    type: str = "hello"


@dataclass(frozen=True)
class Ping:
    t: float | None = None
    type: str = "ping"


@dataclass(frozen=True)
class Leave:
    type: str = "leave"


@dataclass(frozen=True)
class Quality:
    values: dict[str, float | int]
    #: "host" or "relay": the browser's selected candidate pair (None if it did not say).
    path: Literal["host", "relay"] | None = None
    type: str = "quality"


@dataclass(frozen=True)
class PeerSignal:
    """``offer``/``answer`` (``sdp``), ``candidate`` (``candidate``) or ``restart``."""

    type: str
    to: uuid.UUID
    sdp: str | None = None
    candidate: dict[str, Any] | None = None

    def relay_body(self) -> dict[str, Any]:
        """The fields forwarded to the target (sender fields are added by the server)."""
        body: dict[str, Any] = {"type": self.type}
        if self.type in ("offer", "answer"):
            body["sdp"] = self.sdp
        elif self.type == "candidate":
            body["candidate"] = self.candidate
        return body


@dataclass(frozen=True)
class Chat:
    """A chat message from an admitted seat to the others in the call."""

    text: str
    type: str = "chat"


@dataclass(frozen=True)
class LobbyMessage:
    """A clinician's message to one seat in the lobby: a preset id or short free text."""

    to: uuid.UUID
    preset: str | None = None
    text: str | None = None
    type: str = "lobby_message"


ClientMessage = Hello | Ping | Leave | Quality | PeerSignal | Chat | LobbyMessage


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 §6)")


def parse(frame: str | bytes) -> ClientMessage:
    """Parse and validate one client frame; raises :class:`ProtocolError`, nothing else.

    Strict JSON (RFC 8259): ``NaN``/``Infinity`` and numbers that overflow a float are
    refused, and so is nesting deeper than :data:`MAX_DEPTH` (no message has more), before
    it can reach the recursive decoder. Binary frames are for the caller to refuse.
    """
    if isinstance(frame, bytes | bytearray):
        raise ProtocolError("bad_frame", "Send text frames with one JSON object each.")
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", "Message too large.")
    if _too_deep(frame):
        raise ProtocolError("bad_json", "Message is nested too deeply.")
    try:
        data = json.loads(frame, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", "Message is not JSON.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("bad_message", "Message must be an object with a type.")
    kind: str = data["type"]
    if kind == "hello":
        return _hello(data)
    if kind == "ping":
        t: Any = data.get("t")
        return Ping(t=float(t) if _is_number(t) and abs(t) <= 1e15 else None)
    if kind == "leave":
        return Leave()
    if kind == "quality":
        path = data.get("path")
        if path is not None and path != "host" and path != "relay":
            raise ProtocolError("bad_quality", "path must be \"host\" or \"relay\".")
        return Quality(values=_quality(data), path=path)
    if kind in PEER_TYPES:
        return _peer(kind, data)
    if kind == "chat":
        return Chat(text=_typed_text(data.get("text"), limit=MAX_CHAT_CHARS, code="bad_chat",
                                     what="chat"))
    if kind == "lobby_message":
        return _lobby_message(data)
    raise ProtocolError("unknown_type", f"Unknown message type {kind[:32]!r}.")


def _hello(data: dict[str, Any]) -> Hello:
    token, session, lang = data.get("token"), data.get("session"), data.get("lang")
    if not isinstance(token, str) or not 10 <= len(token) <= 128:
        raise ProtocolError("bad_hello", "hello needs the join token.")
    if not isinstance(session, str) or not SESSION_RE.match(session):
        raise ProtocolError("bad_hello", "hello needs a session id (8-40 url-safe chars).")
    if lang is not None and (not isinstance(lang, str) or len(lang) > 16):
        lang = None
    devices = data.get("devices")
    return Hello(token=token, session=session, lang=lang,
                 devices="ready" if devices == "ready" else "failed" if devices == "failed"
                 else None)


def _quality(data: dict[str, Any]) -> dict[str, float | int]:
    values: dict[str, float | int] = {}
    for name, (kind, limit) in QUALITY_FIELDS.items():
        raw = data.get(name)
        if raw is None:
            continue
        if not _is_number(raw) or not 0 <= raw <= limit:
            raise ProtocolError("bad_quality", f"{name} must be a number from 0 to {limit}.")
        values[name] = int(raw) if kind is int else float(raw)
    return values


def _peer(kind: str, data: dict[str, Any]) -> PeerSignal:
    try:
        to = uuid.UUID(str(data.get("to")))
    except ValueError as exc:
        raise ProtocolError("bad_target", f"{kind} needs the id of the peer in 'to'.") from exc
    if kind in ("offer", "answer"):
        sdp = data.get("sdp")
        if not isinstance(sdp, str) or not 0 < len(sdp) <= MAX_SDP_CHARS:
            raise ProtocolError("bad_sdp", f"{kind} needs an 'sdp' string (RFC 8829 §5).")
        return PeerSignal(type=kind, to=to, sdp=sdp)
    if kind == "candidate":
        return PeerSignal(type=kind, to=to, candidate=_candidate(data.get("candidate")))
    return PeerSignal(type=kind, to=to)


def _typed_text(raw: Any, *, limit: int, code: str, what: str) -> str:
    """Text a person typed: control characters removed, trimmed, 1 to ``limit`` characters."""
    if not isinstance(raw, str) or len(raw) > limit * 4:
        raise ProtocolError(code, f"{what} needs a 'text' string of 1 to {limit} characters.")
    text = _CONTROL_RE.sub("", raw).strip()
    if not 0 < len(text) <= limit:
        raise ProtocolError(code, f"{what} needs a 'text' string of 1 to {limit} characters.")
    return text


def _lobby_message(data: dict[str, Any]) -> LobbyMessage:
    try:
        to = uuid.UUID(str(data.get("to")))
    except ValueError as exc:
        raise ProtocolError("bad_target", "lobby_message needs the seat's id in 'to'.") from exc
    preset, text = data.get("preset"), data.get("text")
    if (preset is None) == (text is None):
        raise ProtocolError("bad_lobby_message", "lobby_message needs a 'preset' or a 'text'.")
    if preset is not None:
        if preset not in LOBBY_PRESETS:
            raise ProtocolError("bad_lobby_message",
                                "preset must be one of " + ", ".join(LOBBY_PRESETS) + ".")
        return LobbyMessage(to=to, preset=str(preset))
    return LobbyMessage(to=to, text=_typed_text(text, limit=MAX_LOBBY_TEXT_CHARS,
                                                code="bad_lobby_message",
                                                what="lobby_message"))


def _candidate(cand: Any) -> dict[str, Any] | None:
    """An ``RTCIceCandidateInit`` (W3C webrtc-pc §4.8.1.1) with its four fields typed; absent
    means end-of-candidates (RFC 8838 §4)."""
    if cand is None:
        return None
    bad = ProtocolError("bad_candidate", "candidate must be an RTCIceCandidateInit.")
    if not isinstance(cand, dict):
        raise bad
    out: dict[str, Any] = {}
    for key in ("candidate", "sdpMid", "usernameFragment"):
        value = cand.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > MAX_CANDIDATE_CHARS:
            raise bad
        out[key] = value
    index = cand.get("sdpMLineIndex")
    if index is not None:
        if type(index) is not int or not 0 <= index <= 65535:
            raise bad
        out["sdpMLineIndex"] = index
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _too_deep(frame: str) -> bool:
    """More than :data:`MAX_DEPTH` brackets open at once (a cheap upper bound: brackets in
    strings count too, which a real message never has that many of)."""
    if frame.count("[") + frame.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for char in frame:
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


class Phase(enum.Enum):
    """Where a connection is in its life; the server derives it from the seat's state."""

    NEW = "new"  # accepted, no hello yet
    LOBBY = "lobby"  # seat invited/waiting/left: only its own state, no peers
    ADMITTED = "admitted"  # in the call: may signal other admitted seats
    CLOSED = "closed"  # removed, visit ended, replaced by a newer socket


class Verdict(enum.Enum):
    OK = "ok"
    NEED_HELLO = "need_hello"
    ALREADY_JOINED = "already_joined"
    REJECTED_BEFORE_ADMIT = "rejected_before_admit"
    #: Chat from a seat that is not in the call.
    NOT_IN_CALL = "not_in_call"
    #: A lobby message from a seat that is not staff.
    STAFF_ONLY = "staff_only"
    CLOSED = "closed"


def phase_of(state: str, *, visit_status: str) -> Phase:
    """The phase of a socket whose seat is in lobby ``state``."""
    if visit_status == "ended" or state == "removed":
        return Phase.CLOSED
    return Phase.ADMITTED if state == "admitted" else Phase.LOBBY


def check(phase: Phase, message: ClientMessage, *, staff: bool = False) -> Verdict:
    """May a socket in ``phase`` (of a staff seat or not) send ``message``? (The lobby rule
    lives here: only staff message the lobby, only the call chats.)"""
    if phase is Phase.CLOSED:
        return Verdict.CLOSED
    if phase is Phase.NEW:
        return Verdict.OK if isinstance(message, Hello | Ping) else Verdict.NEED_HELLO
    if isinstance(message, Hello):
        return Verdict.ALREADY_JOINED
    if isinstance(message, PeerSignal) and phase is not Phase.ADMITTED:
        return Verdict.REJECTED_BEFORE_ADMIT
    if isinstance(message, LobbyMessage) and not staff:
        return Verdict.STAFF_ONLY
    if isinstance(message, Chat) and phase is not Phase.ADMITTED:
        return Verdict.NOT_IN_CALL
    return Verdict.OK


def encode(kind: str, **fields: Any) -> str:
    """One server → client frame (strict JSON: a browser's ``JSON.parse`` accepts it)."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), allow_nan=False)
