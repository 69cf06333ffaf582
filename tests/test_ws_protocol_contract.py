"""Contract: the uvicorn internals server/ws_protocol.py relies on are still there.

`VoicebotWebSocketProtocol` overrides one method of uvicorn's sans-I/O WebSocket protocol
and reads its per-message state; uvicorn is pinned exactly in pyproject.toml, and this test
says what to update when the pin moves.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
from pathlib import Path

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from voicebot.server import ws_protocol

# What the override reads or calls on uvicorn's protocol.
USED = ("send_receive_event_to_app", "curr_msg_data_type", "frames", "close_sent", "conn")
CALLED = ("handle_parser_exception",)


def test_uvicorn_is_the_pinned_version() -> None:
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    pin = re.search(r'"uvicorn\[standard\]==([^"]+)"', pyproject.read_text())
    assert pin, "pyproject.toml must pin uvicorn exactly (ws_protocol.py subclasses it)"
    assert importlib.metadata.version("uvicorn") == pin.group(1)
    assert pin.group(1) in inspect.getsource(ws_protocol), "ws_protocol's docstring names the pin"


def test_the_overridden_protocol_still_has_what_the_override_uses() -> None:
    source = inspect.getsource(WebSocketsSansIOProtocol)
    missing = [
        name
        for name in USED + CALLED
        if not hasattr(WebSocketsSansIOProtocol, name) and f"self.{name} =" not in source
    ]
    assert not missing, (
        f"uvicorn {importlib.metadata.version('uvicorn')}'s WebSocketsSansIOProtocol no longer "
        f"has {missing}: update src/voicebot/server/ws_protocol.py"
    )
    for name in (*CALLED, "send_receive_event_to_app"):
        assert callable(getattr(WebSocketsSansIOProtocol, name))
    # The override is reached: the text message is decoded in this method, as the
    # override assumes (it checks UTF-8 before the parent decodes).
    parent = inspect.getsource(WebSocketsSansIOProtocol.send_receive_event_to_app)
    assert "decode()" in parent and "curr_msg_data_type" in parent


def test_voicebot_protocol_overrides_only_that_method() -> None:
    own = {
        name
        for name, value in vars(ws_protocol.VoicebotWebSocketProtocol).items()
        if callable(value) and not name.startswith("__")
    }
    assert own == {"send_receive_event_to_app"}
