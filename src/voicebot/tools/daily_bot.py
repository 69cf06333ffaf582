"""`voicebot daily --room URL`: the bot joins a Daily room someone else manages, until it ends."""

from __future__ import annotations

import asyncio
import uuid

from loguru import logger

from voicebot.config import Settings
from voicebot.errors import ConfigError
from voicebot.models import SharedModels
from voicebot.providers import spec as providers
from voicebot.transports.daily_rooms import DailyRooms


async def join_room(settings: Settings, room_url: str, token: str | None) -> str | None:
    """Load the models, join `room_url` and converse; returns why the session ended.

    Without `token`, an owner token for the room is made with DAILY_API_KEY (a private
    room refuses a bot without one).
    """
    if not room_url.startswith(("https://", "http://")):
        raise ConfigError(f"--room must be a Daily room URL (https://...), not {room_url!r}")
    if token is None:
        token = await _bot_token(settings, room_url)
    providers.check(settings)
    models = await asyncio.to_thread(SharedModels.load, settings)
    await asyncio.to_thread(models.warm)

    from voicebot.transports.daily import run_daily_session

    session_id = uuid.uuid4().hex[:12]
    logger.bind(session=session_id, room=room_url).info("joining daily room")
    return await run_daily_session(room_url, token, models, settings, session_id=session_id)


async def _bot_token(settings: Settings, room_url: str) -> str | None:
    key = settings.secrets.daily_api_key
    if key is None or not key.get_secret_value():
        logger.warning("no --token and no DAILY_API_KEY: joining without a token (public rooms)")
        return None
    rooms = DailyRooms(settings.daily, key.get_secret_value())
    try:
        return await rooms.bot_token(room_url)
    finally:
        await rooms.close()
