"""uvicorn's WebSocket protocol, closing non-UTF-8 text frames with 1007 and a reason.

uvicorn decodes text frames before the app sees them; its own handler logs a traceback at
ERROR and closes 1007 with no reason, so any client could write tracebacks into our log.
Written against uvicorn 0.54.0's `WebSocketsSansIOProtocol` (pinned exactly; what `ws="auto"`
picks); tests/test_ws_protocol_contract.py checks what it relies on, and
tests/test_ws_bad_input.py sends such a frame through the real server.
"""

from __future__ import annotations

from typing import Any

from loguru import logger
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# RFC 6455: "invalid frame payload data" (a text message that is not UTF-8).
CLOSE_INVALID_PAYLOAD = 1007
INVALID_UTF8_REASON = "text message is not valid UTF-8; send JSON text or binary audio"


class VoicebotWebSocketProtocol(WebSocketsSansIOProtocol):
    """Pass as `ws=` to uvicorn: refuses non-UTF-8 text with a reason, logged once at INFO."""

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                logger.bind(code="invalid_utf8").info("protocol error from client")
                self.conn.send_close(CLOSE_INVALID_PAYLOAD, INVALID_UTF8_REASON)
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()


def websocket_options(max_message_bytes: int) -> dict[str, Any]:
    """uvicorn.Config's WebSocket settings for every server we start.

    Compression is declined: browsers and the websockets library offer permessage-deflate,
    and on 16-bit PCM it costs a zlib pass over every 20 ms of audio, both ways, in the
    event loop's thread, for little gain.
    """
    return {
        "ws": VoicebotWebSocketProtocol,
        "ws_max_size": 4 * max_message_bytes,
        "ws_per_message_deflate": False,
    }
