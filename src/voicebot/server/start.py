"""`POST /start`: the Pipecat runner's contract, so Pipecat's client-js connects unchanged.

`{"transport": "webrtc"}` -> `{"sessionId"}` (the offer follows on /sessions/{id}/api/offer);
`{"transport": "daily", "createDailyRoom": true, ...}` -> `{"dailyRoom", "dailyToken", "sessionId"}`
with the person's token and the bot already on its way into the room;
`{"transport": "websocket"}` -> `{"wsUrl", "sessionId"}` for Pipecat's protobuf WebSocket.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from voicebot.server.daily import DailySessions
from voicebot.transports.webrtc import WebRTCRoutes, json_body

PIPECAT_WS_PATH = "/ws-client"
TRANSPORTS = ("webrtc", "daily", "websocket")


def start_router(webrtc: WebRTCRoutes, daily: DailySessions) -> APIRouter:
    router = APIRouter()

    @router.post("/start")
    async def start(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        transport = body.get("transport")
        if transport is None:
            transport = "daily" if body.get("createDailyRoom") else "webrtc"
        if transport in TRANSPORTS:
            # Refuse before handing out an id, so a client retries /start, not its offer.
            webrtc.ready_models()
        if transport == "webrtc":
            return {"sessionId": webrtc.register_session()}
        if transport == "websocket":
            return {"wsUrl": _ws_url(request), "sessionId": webrtc.register_session()}
        if transport == "daily":
            if body.get("createDailyRoom") is not True:
                raise HTTPException(
                    status_code=400,
                    detail="this server makes a room per session: send createDailyRoom: true "
                    "(to use a room of your own, run `voicebot daily --room URL`)",
                )
            started = await daily.start(
                _object(body, "dailyRoomProperties"), _object(body, "dailyMeetingTokenProperties")
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


def _ws_url(request: Request) -> str:
    scheme = "wss" if request.url.scheme == "https" else "ws"
    return f"{scheme}://{request.url.netloc}{PIPECAT_WS_PATH}"
