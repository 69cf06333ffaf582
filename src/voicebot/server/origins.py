"""Which web origins may use this server: CORS for HTTP routes, the Origin check for WebSockets.

With `server.allowed_origins` empty only same-origin pages (the Origin's host:port equals
the Host header) and clients that send no Origin (apps, scripts, the CLI) get in. A browser
always sends Origin on a WebSocket handshake, so a page elsewhere cannot drive a session.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from fastapi import WebSocket
from fastapi.responses import PlainTextResponse
from loguru import logger

# Client-supplied text goes into the log only this long.
_LOGGED_ORIGIN_CHARS = 100


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """True for no Origin, a same-origin one (host:port == Host) or one listed in `allowed`."""
    if origin is None:
        return True
    if origin.rstrip("/").lower() in {a.rstrip("/").lower() for a in allowed}:
        return True
    try:
        netloc = urlsplit(origin).netloc.lower()
    except ValueError:
        return False
    return bool(netloc) and host is not None and netloc == host.lower()


async def refuse_foreign_origin(websocket: WebSocket, allowed: Sequence[str]) -> bool:
    """Answer HTTP 403 with a reason (before the upgrade) if the handshake's Origin is not
    allowed; returns True when the connection was refused."""
    origin = websocket.headers.get("origin")
    if origin_allowed(origin, websocket.headers.get("host"), allowed):
        return False
    assert origin is not None
    logger.bind(code="origin_not_allowed", origin=origin[:_LOGGED_ORIGIN_CHARS]).info(
        "refused a websocket handshake"
    )
    reason = (
        f"origin {origin[:_LOGGED_ORIGIN_CHARS]!r} is not allowed to open a session here; "
        "the server accepts its own pages and those in server.allowed_origins"
    )
    await websocket.send_denial_response(PlainTextResponse(reason, status_code=403))
    return True
