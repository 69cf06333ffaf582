"""`POST /start`: session credentials, in the Pipecat runner's contract so client-js connects.

A caller with an API key (or, on a keyless server, a local one; server/auth.py) gets a
short-lived, single-use session token bound to the transport it asked for:
`{"transport": "ws"}` -> `{"url": ".../ws?token=...", "sessionId", "token", "pageUrl"}`;
`{"transport": "websocket"}` -> the same for Pipecat's protobuf WebSocket (also as `wsUrl`);
`{"transport": "webrtc"}` -> `{"sessionId", "token", "offerUrl", "pageUrl"}` (the offer goes
to /sessions/{id}/api/offer?token=...);
`{"transport": "daily", "createDailyRoom": true, ...}` -> `{"dailyRoom", "dailyToken",
"sessionId"}` with the person's token and the bot already on its way into the room.
Our page, opened as `/?transport=webrtc&token=...`, posts /start with that token and gets
back the session it names.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request

from voicebot.server.auth import Access, Transport, session_id_from
from voicebot.server.daily import DailySessions
from voicebot.transports.webrtc import WebRTCRoutes, json_body

PIPECAT_WS_PATH = "/ws-client"
TRANSPORTS = ("webrtc", "daily", "websocket", "ws")
_WS_PATHS = {"ws": "/ws", "websocket": PIPECAT_WS_PATH}


def start_router(webrtc: WebRTCRoutes, daily: DailySessions, access: Access) -> APIRouter:
    router = APIRouter()
    tokens = access.tokens

    @router.post("/start")
    async def start(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        transport = body.get("transport")
        if transport is None:
            transport = "daily" if body.get("createDailyRoom") else "webrtc"
        if transport in TRANSPORTS:
            # Refuse before handing out an id, so a client retries /start, not its offer.
            webrtc.ready_models()
        given = session_id_from(request.state)
        if given is not None:
            # A WebRTC token (checked by the access middleware) names its own session.
            if transport != "webrtc":
                raise HTTPException(401, "this session token is for transport 'webrtc'")
            webrtc.started.add(given)
            return {"sessionId": given}
        if transport == "webrtc":
            session_id = webrtc.register_session()
            token = tokens.issue("webrtc", session_id)
            return {
                "sessionId": session_id,
                "token": token,
                "expiresInSecs": tokens.ttl_secs,
                "offerUrl": _http_url(request, f"/sessions/{session_id}/api/offer", token),
                "pageUrl": _page_url(request, "webrtc", token),
            }
        if transport in _WS_PATHS:
            kind: Transport = "ws" if transport == "ws" else "websocket"
            session_id = uuid.uuid4().hex[:12]
            token = tokens.issue(kind, session_id)
            url = _ws_url(request, _WS_PATHS[kind], token)
            reply: dict[str, Any] = {
                "url": url,
                "sessionId": session_id,
                "token": token,
                "expiresInSecs": tokens.ttl_secs,
            }
            if kind == "ws":
                reply["pageUrl"] = _page_url(request, "websocket", token)
            else:
                reply["wsUrl"] = url  # Pipecat client-js reads this name
            return reply
        if transport == "daily":
            if body.get("createDailyRoom") is not True:
                raise HTTPException(
                    status_code=400,
                    detail="this server makes a room per session: send createDailyRoom: true "
                    "(to use a room of your own, run `voicebot daily --room URL`)",
                )
            started = await daily.start(
                _object(body, "dailyRoomProperties"),
                _object(body, "dailyMeetingTokenProperties"),
                client=request.client.host if request.client else None,
            )
            return {
                "dailyRoom": started.room_url,
                "dailyToken": started.user_token,
                "sessionId": started.session_id,
            }
        raise HTTPException(
            status_code=400,
            detail=f"transport {transport!r} is not served here; set transport to one of "
            f"{', '.join(TRANSPORTS)}",
        )

    return router


def _object(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise HTTPException(status_code=400, detail=f"{key} must be a JSON object")
    return value


def _http_url(request: Request, path: str, token: str) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{path}?{urlencode({'token': token})}"


def _ws_url(request: Request, path: str, token: str) -> str:
    scheme = "wss" if request.url.scheme == "https" else "ws"
    return f"{scheme}://{request.url.netloc}{path}?{urlencode({'token': token})}"


def _page_url(request: Request, transport: str, token: str) -> str:
    query = urlencode({"transport": transport, "token": token})
    return f"{request.url.scheme}://{request.url.netloc}/?{query}"
