"""Daily sessions on the server: a private room per session, the bot in it, the room deleted after.

`GET /daily` makes a room and a session and sends the browser to Daily's own page with
the person's token; `POST /start` (server.start) uses `DailySessions.start` the same way.
"""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse
from loguru import logger

from voicebot.config import Settings
from voicebot.observability.metrics_observer import SessionMetrics
from voicebot.server.drain import Drain
from voicebot.server.limits import SessionGuard, SessionSlot
from voicebot.transports.daily_rooms import DailyAPIError, DailyRoom, DailyRooms
from voicebot.transports.webrtc import ModelsGetter


@dataclass(frozen=True)
class StartedDailySession:
    session_id: str
    room_url: str
    user_token: str


class DailySessions:
    """Every running Daily session of this server, and the rooms made for them."""

    def __init__(
        self,
        get_models: ModelsGetter,
        settings: Settings,
        *,
        guard: SessionGuard,
        metrics: SessionMetrics | None = None,
        drain: Drain | None = None,
    ) -> None:
        self._metrics = metrics
        self._guard = guard
        self._drain = drain
        self._get_models = get_models
        self._settings = settings
        self._rooms: DailyRooms | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.router = self._build_router()

    def _rooms_service(self) -> DailyRooms:
        key = self._settings.secrets.daily_api_key
        if key is None or not key.get_secret_value():
            raise HTTPException(
                status_code=400,
                detail="transport 'daily' needs a Daily API key: set DAILY_API_KEY "
                "(https://dashboard.daily.co/developers) and restart the server",
            )
        if importlib.util.find_spec("daily") is None:
            raise HTTPException(
                status_code=400,
                detail="transport 'daily' needs daily-python: pip install 'voicebot[daily]'",
            )
        if self._rooms is None:
            self._rooms = DailyRooms(self._settings.daily, key.get_secret_value())
        return self._rooms

    async def start(
        self,
        room_properties: dict[str, Any] | None = None,
        token_properties: dict[str, Any] | None = None,
        *,
        client: str | None = None,
    ) -> StartedDailySession:
        """Create a room, start the bot in it; returns what the person needs to join.

        `client` is the caller's address, counted against server.max_sessions_per_client."""
        rooms = self._rooms_service()
        if self._drain is not None and self._drain.draining:
            raise HTTPException(status_code=503, detail="the server is restarting; retry shortly")
        if self._get_models() is None:
            raise HTTPException(status_code=503, detail="models are still loading; retry shortly")
        slot = self._guard.http_slot(client)
        try:
            room = await rooms.create(room_properties, token_properties)
        except DailyAPIError as e:
            slot.release()
            raise HTTPException(status_code=e.http_status, detail=str(e)) from e
        except BaseException:
            slot.release()
            raise
        session_id = str(uuid.uuid4())
        task = asyncio.create_task(self._run(rooms, room, session_id, slot))
        self.tasks[session_id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(session_id, None))
        return StartedDailySession(session_id, room.url, room.user_token)

    async def _run(
        self, rooms: DailyRooms, room: DailyRoom, session_id: str, slot: SessionSlot
    ) -> None:
        from voicebot.transports.daily import run_daily_session

        log = logger.bind(session=session_id, room=room.name)
        models = self._get_models()
        this = asyncio.current_task()

        async def end(_reason: str) -> None:
            # Leaving the room ends the session; finally below deletes the room.
            assert this is not None
            this.cancel()

        try:
            assert models is not None, "start() checks the models are loaded"
            async with slot, self._guard.deadlines(end) as deadlines:
                reason = await run_daily_session(
                    room.url,
                    room.bot_token,
                    models,
                    self._settings,
                    session_id=session_id,
                    metrics=self._metrics,
                    observers=[deadlines],
                )
            log.bind(reason=reason or "pipeline finished").info("daily session over")
        except Exception as e:  # one broken session must not take others down
            log.bind(error=repr(e)).error("daily session failed")
        finally:
            await rooms.delete(room.name)

    async def close(self) -> None:
        """End every Daily session and delete its room (server shutdown)."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._rooms is not None:
            await self._rooms.close()
        if tasks:
            logger.bind(sessions=len(tasks)).info("daily sessions ended")

    def _build_router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/daily")
        async def daily_room(request: Request) -> RedirectResponse:
            started = await self.start(client=request.client.host if request.client else None)
            return RedirectResponse(url=f"{started.room_url}?t={started.user_token}")

        return router
