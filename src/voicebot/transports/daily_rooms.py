"""Private Daily rooms and meeting tokens, one room per session, over Pipecat's DailyRESTHelper.

Every room is private and expires (`exp`, `eject_at_room_exp`); the bot gets an owner
token and the person a separate non-owner one. Daily's failures become `DailyAPIError`,
which carries the HTTP status our own caller should see; 5xx answers and timeouts get
one quick retry.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from loguru import logger
from pipecat.transports.daily.utils import (
    DailyMeetingTokenParams,
    DailyMeetingTokenProperties,
    DailyRESTHelper,
    DailyRoomParams,
    DailyRoomProperties,
)
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_fixed

from voicebot.config import DailySettings
from voicebot.errors import ProviderError

# DailyRESTHelper raises plain exceptions whose text carries Daily's status, e.g.
# "Unable to create room (status: 429): ..."; tests/test_daily_rooms.py pins that format.
_STATUS = re.compile(r"status: (\d{3})")
RETRY_WAIT_SECS = 0.2


class DailyAPIError(ProviderError):
    """Daily's REST API refused or did not answer; `http_status` is what our caller gets."""

    def __init__(
        self, message: str, *, daily_status: int | None, retryable: bool, timed_out: bool = False
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.daily_status = daily_status
        self.timed_out = timed_out

    @property
    def http_status(self) -> int:
        if self.timed_out:
            return 504
        if self.daily_status is None:
            return 502
        if self.daily_status == 400:
            return 400  # the caller's room or token properties were refused
        if self.daily_status == 429:
            return 503
        return 502


@dataclass(frozen=True)
class DailyRoom:
    """A room made for one session, with the bot's and the person's tokens."""

    url: str
    name: str
    bot_token: str
    user_token: str
    expires_at: float


class DailyRooms:
    """Creates and deletes per-session rooms; `close()` releases the HTTP session."""

    def __init__(self, settings: DailySettings, api_key: str) -> None:
        self._settings = settings
        self._api_key = api_key
        self._session: aiohttp.ClientSession | None = None

    def _helper(self) -> DailyRESTHelper:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self._settings.request_timeout_secs)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return DailyRESTHelper(
            daily_api_key=self._api_key,
            daily_api_url=self._settings.api_url.rstrip("/"),
            aiohttp_session=self._session,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def create(
        self,
        room_properties: dict[str, Any] | None = None,
        token_properties: dict[str, Any] | None = None,
    ) -> DailyRoom:
        """A private room that expires, an owner token for the bot, a guest token for the person.

        `room_properties` / `token_properties` are a client's extra Daily properties
        (the runner's `dailyRoomProperties` / `dailyMeetingTokenProperties`); privacy,
        expiry, ejection and the participant limit are always ours.
        """
        expires_at = time.time() + self._settings.room_expiry_secs
        params = self._room_params(room_properties or {}, expires_at)
        room = await self._call("create room", lambda h: h.create_room(params))
        try:
            bot_token = await self._token(room.url, expires_at, owner=True, extra={})
            user_token = await self._token(
                room.url, expires_at, owner=False, extra=token_properties or {}
            )
        except DailyAPIError:
            await self.delete(room.name)
            raise
        logger.bind(room=room.name).info("daily room created")
        return DailyRoom(
            url=room.url,
            name=room.name,
            bot_token=bot_token,
            user_token=user_token,
            expires_at=expires_at,
        )

    async def bot_token(self, room_url: str) -> str:
        """An owner token for the bot in a room made elsewhere (`voicebot daily --room`)."""
        expires_at = time.time() + self._settings.room_expiry_secs
        return await self._token(room_url, expires_at, owner=True, extra={})

    async def delete(self, name: str) -> bool:
        """Delete a room (a room that is already gone counts as deleted); never raises."""
        try:
            await self._call("delete room", lambda h: h.delete_room_by_name(name))
        except DailyAPIError as e:
            logger.bind(room=name, error=str(e)).warning("daily room not deleted")
            return False
        logger.bind(room=name).info("daily room deleted")
        return True

    def _room_params(self, extra: dict[str, Any], expires_at: float) -> DailyRoomParams:
        # Fresh objects on every call: DailyRESTHelper writes into the params it is given.
        try:
            requested_exp = extra.get("exp")
            properties = {
                **extra,
                "exp": min(float(requested_exp), expires_at) if requested_exp else expires_at,
                "eject_at_room_exp": True,
                "enable_prejoin_ui": False,
                "start_video_off": True,
                "max_participants": self._settings.max_participants,
            }
            return DailyRoomParams(privacy="private", properties=DailyRoomProperties(**properties))
        except (ValidationError, TypeError, ValueError) as e:
            raise DailyAPIError(
                f"invalid dailyRoomProperties: {e}", daily_status=400, retryable=False
            ) from e

    async def _token(
        self, room_url: str, expires_at: float, *, owner: bool, extra: dict[str, Any]
    ) -> str:
        name = self._settings.bot_name if owner else self._settings.user_name
        try:
            properties = DailyMeetingTokenProperties(
                **{"user_name": name, "start_video_off": True, **extra}
            )
        except (ValidationError, TypeError) as e:
            raise DailyAPIError(
                f"invalid dailyMeetingTokenProperties: {e}", daily_status=400, retryable=False
            ) from e
        params = DailyMeetingTokenParams(properties=properties)
        what = "create bot token" if owner else "create user token"
        token: str = await self._call(
            what,
            lambda h: h.get_token(
                room_url,
                expiry_time=max(1.0, expires_at - time.time()),
                eject_at_token_exp=True,
                owner=owner,
                params=params,
            ),
        )
        return token

    async def _call(self, what: str, request: Any) -> Any:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(2),
            wait=wait_fixed(RETRY_WAIT_SECS),
            retry=retry_if_exception(lambda e: isinstance(e, DailyAPIError) and e.retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        return await request(self._helper())
                    except Exception as e:
                        raise _translate(what, e) from e
        except DailyAPIError as e:
            logger.bind(call=what, status=e.daily_status, error=str(e)).warning(
                "daily api call failed"
            )
            raise
        raise AssertionError("unreachable: tenacity reraises the last error")


def _translate(what: str, error: Exception) -> DailyAPIError:
    if isinstance(error, DailyAPIError):
        return error
    if isinstance(error, asyncio.TimeoutError):
        return DailyAPIError(
            f"Daily API timed out ({what})", daily_status=None, retryable=True, timed_out=True
        )
    if isinstance(error, aiohttp.ClientError):
        return DailyAPIError(
            f"Daily API unreachable ({what}): {error}", daily_status=None, retryable=True
        )
    match = _STATUS.search(str(error))
    status = int(match.group(1)) if match else None
    hint = ""
    if status in (401, 403):
        hint = "; check DAILY_API_KEY"
    elif status == 429:
        hint = "; Daily is rate limiting this key, try again shortly"
    return DailyAPIError(
        f"Daily API refused to {what} (status {status}){hint}: {error}",
        daily_status=status,
        retryable=status is not None and status >= 500,
    )
