"""MLLP framing: ``0x0B`` message ``0x1C 0x0D``, decoded incrementally from any chunking.

HL7 Version 2 Transport Specification, MLLP Release 1 (HL7 v2.5.1 Appendix C.4). This is the
bottom of three layers (framing → message → listener): it knows nothing about HL7 content or
sockets, so every byte boundary can be tested without I/O.
"""

from __future__ import annotations

from collections import deque

from openvisit.errors import ConfigurationError
from openvisit.hl7v2.errors import MllpError, MllpFrameTooLarge

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
DEFAULT_MAX_FRAME_BYTES = 1 << 20

_OUTSIDE, _INSIDE, _SKIPPING = range(3)


def encode_frame(message: bytes) -> bytes:
    """Wrap one message in an MLLP frame.

    Returns ``0x0B + message + 0x1C 0x0D``. Raises :class:`MllpError` when the message holds a
    start or end block byte, which no receiver could frame correctly.
    """
    if START_BLOCK in message or END_BLOCK in message:
        raise MllpError("an HL7 message must not contain the MLLP bytes 0x0B or 0x1C")
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


class MllpDecoder:
    """Turn a byte stream into the messages it carries, whatever the chunk boundaries.

    Bytes outside frames (noise, a stray CR after the end block) are discarded and counted in
    :attr:`discarded_bytes`. A start block inside a frame means the sender restarted: the
    unfinished frame is dropped. The end block ``0x1C`` ends a frame whether or not the ``0x0D``
    follows, so a sender that omits it is still understood. Empty frames (keep-alives) are
    skipped. Memory stays bounded by ``max_frame_bytes`` plus queued complete messages.
    """

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 1:
            raise ConfigurationError("the MLLP maximum frame size must be at least one byte")
        self.max_frame_bytes = max_frame_bytes
        self.discarded_bytes = 0
        self._state = _OUTSIDE
        self._frame = bytearray()
        # Completed messages and oversize markers, in stream order.
        self._ready: deque[bytes | MllpFrameTooLarge] = deque()

    @property
    def in_frame(self) -> bool:
        """True while part of a frame has been received (for idle-timeout decisions)."""
        return self._state != _OUTSIDE

    def feed(self, data: bytes) -> list[bytes]:
        """Consume a chunk and return the messages completed so far, oldest first.

        Raises :class:`MllpFrameTooLarge` where an oversize frame sits in the stream: messages
        before it are returned by this call, the error is raised by the next one, and messages
        after it by the call after that (``feed(b"")`` collects them without new data). The
        oversize frame's bytes are discarded up to its end block.
        """
        self._scan(data)
        out: list[bytes] = []
        while self._ready:
            if isinstance(self._ready[0], MllpFrameTooLarge) and out:
                break
            item = self._ready.popleft()
            if isinstance(item, MllpFrameTooLarge):
                raise item
            out.append(item)
        return out

    def _scan(self, data: bytes) -> None:
        pos, size = 0, len(data)
        while pos < size:
            if self._state == _OUTSIDE:
                start = data.find(START_BLOCK, pos)
                if start < 0:
                    self.discarded_bytes += size - pos
                    return
                self.discarded_bytes += start - pos
                self._begin()
                pos = start + 1
                continue
            ends = [i for i in (data.find(START_BLOCK, pos), data.find(END_BLOCK, pos)) if i >= 0]
            stop = min(ends) if ends else size
            self._take(data[pos:stop])
            if stop == size:
                return
            if data[stop : stop + 1] == END_BLOCK:
                if self._state == _INSIDE and self._frame:
                    self._ready.append(bytes(self._frame))
                self._frame.clear()
                self._state = _OUTSIDE
            else:
                # A new start block before the end block: the sender gave up on that frame.
                if self._state == _INSIDE:
                    self.discarded_bytes += len(self._frame)
                self._begin()
            pos = stop + 1

    def _begin(self) -> None:
        self._frame.clear()
        self._state = _INSIDE

    def _take(self, chunk: bytes) -> None:
        if self._state == _SKIPPING:
            self.discarded_bytes += len(chunk)
            return
        if len(self._frame) + len(chunk) > self.max_frame_bytes:
            self.discarded_bytes += len(self._frame) + len(chunk)
            self._frame.clear()
            self._state = _SKIPPING
            self._ready.append(MllpFrameTooLarge(self.max_frame_bytes))
            return
        self._frame += chunk
