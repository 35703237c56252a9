"""The WebSocket server protocol ``openvisit serve``/``web`` give uvicorn.

uvicorn's default (the websockets sans-I/O protocol) closes a text frame that is not UTF-8
with 1007, as RFC 6455 §8.1 requires, but logs it as an exception with a traceback: any
client could fill the log with tracebacks. This subclass answers the same way (close 1007,
now with a reason) and logs one line without a traceback. Everything else is uvicorn's; the
size limit (``ws_max_size``) is enforced by the websockets parser from the frame header.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from openvisit.logs import get_logger

log = get_logger(__name__)


class SignallingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, refusing non-UTF-8 text without a traceback."""

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError:
                self.frames = []
                log.info("ws_invalid_utf8_closed")
                self.conn.send_close(1007, "Text frames must be UTF-8.")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()
