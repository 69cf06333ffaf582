"""Access control and limits, unit by unit: who counts as local, tokens, keys, buckets, slots."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pipecat.frames.frames import InputAudioRawFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from tests.helpers import tweak
from voicebot.config import Settings
from voicebot.errors import ConfigError
from voicebot.server.auth import Access, AccessDenied, Caller, SessionTokens, check_exposure
from voicebot.server.auth import is_loopback as loopback
from voicebot.server.limits import RateLimiter, Refused, SessionDeadlines, SessionLimits

KEY = "sk-FAKE-SECRET-1234567890"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("2001:db8::1", False),
        ("::ffff:10.0.0.1", False),
        ("localhost", False),  # a client address is never a name
        ("", False),
        (None, False),
    ],
)
def test_only_loopback_addresses_count_as_this_machine(host: str | None, local: bool) -> None:
    assert loopback(host) is local


def test_a_token_works_once_for_its_transport_and_session() -> None:
    tokens = SessionTokens("secret", ttl_secs=300)
    token = tokens.issue("ws", "abc")
    with pytest.raises(AccessDenied, match="for transport 'ws', not 'webrtc'"):
        tokens.verify(token, "webrtc")
    with pytest.raises(AccessDenied, match="another session"):
        tokens.verify(token, "ws", session_id="xyz")
    assert tokens.verify(token, "ws") == "abc"
    with pytest.raises(AccessDenied, match="already used") as reused:
        tokens.verify(token, "ws")
    assert reused.value.status == 401 and reused.value.close_code == 4401


def test_a_token_checked_without_spending_it_still_works_later() -> None:
    tokens = SessionTokens("secret", ttl_secs=300)
    token = tokens.issue("webrtc", "abc")
    assert tokens.verify(token, "webrtc", consume=False) == "abc"
    assert tokens.verify(token, "webrtc", session_id="abc") == "abc"


def test_a_token_expires_after_its_ttl() -> None:
    clock = Clock()
    tokens = SessionTokens("secret", ttl_secs=300, clock=clock)
    token = tokens.issue("ws", "abc")
    clock.now += 302
    with pytest.raises(AccessDenied, match="expired"):
        tokens.verify(token, "ws")


def test_a_token_from_another_secret_or_tampered_is_refused() -> None:
    token = SessionTokens("one", ttl_secs=300).issue("ws", "abc")
    with pytest.raises(AccessDenied, match="not valid"):
        SessionTokens("two", ttl_secs=300).verify(token, "ws")
    mine = SessionTokens("one", ttl_secs=300)
    with pytest.raises(AccessDenied, match="not valid"):
        mine.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "ws")
    with pytest.raises(AccessDenied, match="not valid"):
        mine.verify("garbage", "ws")


def test_used_ids_are_forgotten_once_expired_and_bounded() -> None:
    clock = Clock()
    tokens = SessionTokens("secret", ttl_secs=10, max_used=2, clock=clock)
    tokens.verify(tokens.issue("ws", "a"), "ws")
    tokens.verify(tokens.issue("ws", "b"), "ws")
    # Full of unexpired ids: refuse rather than forget one (its token could be replayed).
    with pytest.raises(AccessDenied) as full:
        tokens.verify(tokens.issue("ws", "c"), "ws")
    assert full.value.status == 503 and full.value.close_code == 1013
    clock.now += 12
    assert tokens.verify(tokens.issue("ws", "d"), "ws") == "d"


def access_for(settings: Settings, *, keys: str | None = None, insecure: bool = False) -> Access:
    secrets = settings.secrets.model_copy(update={"api_keys": None})
    if keys is not None:
        from pydantic import SecretStr

        secrets = secrets.model_copy(update={"api_keys": SecretStr(keys)})
    tuned = tweak(settings, server={"insecure_no_auth": insecure})
    return Access(tuned.model_copy(update={"secrets": secrets}))


def test_without_keys_only_this_machine_is_served() -> None:
    access = access_for(Settings())
    access.check_caller(Caller("127.0.0.1", None, None))
    access.check_caller(Caller("::1", None, None))
    with pytest.raises(AccessDenied, match="VOICEBOT_API_KEYS") as remote:
        access.check_caller(Caller("10.1.2.3", None, None))
    assert remote.value.status == 403 and remote.value.close_code == 4403
    access_for(Settings(), insecure=True).check_caller(Caller("10.1.2.3", None, None))


def test_with_keys_everyone_needs_one_even_locally() -> None:
    access = access_for(Settings(), keys=f"other-key, {KEY}")
    access.check_caller(Caller("10.1.2.3", f"Bearer {KEY}", None))
    access.check_caller(Caller("10.1.2.3", "bearer other-key", None))
    for authorization in (None, "Bearer wrong", f"Basic {KEY}", "Bearer "):
        with pytest.raises(AccessDenied) as refused:
            access.check_caller(Caller("127.0.0.1", authorization, None))
        assert refused.value.status == 401
        assert KEY not in refused.value.reason


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5"])
def test_serving_other_machines_needs_keys_or_the_insecure_flag(host: str) -> None:
    with pytest.raises(ConfigError, match=r"VOICEBOT_API_KEYS.*--insecure-no-auth"):
        check_exposure(tweak(Settings(), server={"host": host}))
    check_exposure(tweak(Settings(), server={"host": host, "insecure_no_auth": True}))
    for local in ("127.0.0.1", "localhost", "::1"):
        check_exposure(tweak(Settings(), server={"host": local}))


def test_the_rate_limiter_allows_a_burst_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(Refused) as refused:
        limiter.take("a")
    assert refused.value.status == 429 and refused.value.retry_after_secs == 1
    limiter.take("b")  # other clients have their own bucket
    clock.now += 1.0
    limiter.take("a")


def test_the_rate_limiter_remembers_a_bounded_number_of_clients() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, max_clients=2, clock=Clock())
    for client in ("a", "b", "c"):
        limiter.take(client)
    assert len(limiter._buckets) == 2


def test_session_limits_overall_and_per_client() -> None:
    limits = SessionLimits(max_sessions=3, max_per_client=2)
    first = limits.acquire("a")
    limits.acquire("a")
    with pytest.raises(Refused) as per_client:
        limits.acquire("a")
    assert per_client.value.status == 429 and per_client.value.retry_after_secs > 0
    limits.acquire("b")
    with pytest.raises(Refused) as full:
        limits.acquire("c")
    assert full.value.status == 503 and "capacity" in full.value.reason
    first.release()
    first.release()  # releasing twice frees one place, not two
    assert limits.running == 2
    limits.acquire("c")
    with pytest.raises(Refused):
        limits.acquire("d")


def test_no_per_client_limit_when_zero() -> None:
    limits = SessionLimits(max_sessions=5, max_per_client=0)
    for _ in range(5):
        limits.acquire("a")
    assert limits.running == 5


def audio_pushed() -> FramePushed:
    frame = InputAudioRawFrame(audio=b"\0" * 640, sample_rate=16000, num_channels=1)
    source = FrameProcessor()
    return FramePushed(
        source=source,
        destination=source,
        frame=frame,
        direction=FrameDirection.DOWNSTREAM,
        timestamp=0,
    )


async def run_deadlines(idle: float, total: float, feed_audio_every: float | None) -> list[str]:
    ended: list[str] = []
    done = asyncio.Event()

    async def expire(reason: Any) -> None:
        ended.append(reason)
        done.set()

    deadlines = SessionDeadlines(idle_secs=idle, max_secs=total, on_expire=expire)
    async with deadlines:
        while not done.is_set():
            if feed_audio_every is not None:
                await deadlines.on_push_frame(audio_pushed())
            try:
                await asyncio.wait_for(done.wait(), feed_audio_every or 30)
            except TimeoutError:
                pass
    return ended


async def test_a_session_without_audio_ends_as_idle() -> None:
    assert await run_deadlines(idle=0.3, total=60, feed_audio_every=None) == ["idle timeout"]


async def test_audio_keeps_a_session_alive_until_its_time_limit() -> None:
    ended = await run_deadlines(idle=0.5, total=1.5, feed_audio_every=0.1)
    assert ended == ["session time limit"]
