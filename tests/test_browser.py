"""Our page at `/` in a real browser: Debian's Chromium, a fake microphone asking a question.

Chromium plays a spoken question WAV as its microphone; every request to a host other than
127.0.0.1 is recorded and failed. For each transport the page must show the transcript,
show the bot's reply and hear it (a Web Audio analyser on the received audio), with
nothing leaving the machine. Screenshots go to the test's temporary folder (and to
$VOICEBOT_SCREENSHOTS when set).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf
import soxr
import uvicorn
from fastapi import FastAPI
from loguru import logger
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    async_playwright,
)
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.helpers import REPO
from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.pipecat_compat import is_routine_warning
from voicebot.server import app as server_app
from voicebot.tools.local_server import LocalServer

pytestmark = pytest.mark.slow

FAKE_MIC_RATE = 48000
# Generous: the machine running the suite may be busy; these bound a hang, not a speed.
TURN_TIMEOUT_MS = 120_000
STATE_TIMEOUT_MS = 60_000


def chromium_path() -> str:
    """Debian's chromium (installed by tests/browser/install_chromium.sh when missing)."""
    found = os.environ.get("VOICEBOT_CHROMIUM") or shutil.which("chromium")
    if not found:
        subprocess.run([str(REPO / "tests/browser/install_chromium.sh")], check=True)
        found = shutil.which("chromium")
    assert found, "chromium is not installed and tests/browser/install_chromium.sh failed"
    return found


@pytest.fixture(scope="session")
def fake_mic_wav(question_wavs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The "capital" question as Chromium's fake microphone plays it: PCM16 WAV, looped.

    The microphone starts before the session is connected, so 2 s of silence come before
    the question; Chromium loops the file, so 10 s come after it, time for the bot to
    answer before the question comes round again.
    """
    audio, rate = sf.read(question_wavs["capital"], dtype="float32")
    audio = soxr.resample(audio, rate, FAKE_MIC_RATE)
    silence = np.zeros(FAKE_MIC_RATE * 2, dtype=np.float32)
    tail = np.zeros(FAKE_MIC_RATE * 10, dtype=np.float32)
    path = tmp_path_factory.mktemp("fake-mic") / "capital-48k.wav"
    sf.write(path, np.concatenate([silence, audio, tail]), FAKE_MIC_RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as running:
        yield running


@pytest.fixture(scope="session")
async def browser(playwright: Playwright, fake_mic_wav: Path) -> AsyncIterator[Browser]:
    launched = await playwright.chromium.launch(
        executable_path=chromium_path(),
        args=[
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={fake_mic_wav}",
        ],
    )
    yield launched
    await launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _keep_copy(path: Path) -> None:
    extra = os.environ.get("VOICEBOT_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)


async def screenshot(page: Page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    _keep_copy(path)
    return path


class Guarded:
    """A browser context whose requests to any host but 127.0.0.1 are recorded and failed."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.requests: list[str] = []
        self.foreign: list[str] = []

    @classmethod
    async def open(cls, browser: Browser) -> Guarded:
        guarded = cls(await browser.new_context(service_workers="block"))

        async def guard(route: Any) -> None:
            url = route.request.url
            guarded.requests.append(url)
            if urlsplit(url).hostname != "127.0.0.1":
                guarded.foreign.append(url)
                await route.abort("blockedbyclient")
            else:
                await route.fallback()

        await guarded.context.route("**/*", guard)
        return guarded

    async def page(self) -> Page:
        page = await self.context.new_page()
        page.on("websocket", lambda ws: self.requests.append(ws.url))
        page.on("websocket", lambda ws: self._check(ws.url))
        return page

    def _check(self, url: str) -> None:
        if urlsplit(url).hostname != "127.0.0.1":
            self.foreign.append(url)

    def assert_stayed_local(self) -> None:
        assert self.requests, "the page made no requests at all"
        assert not self.foreign, f"the page reached beyond 127.0.0.1: {self.foreign}"


@pytest.fixture
async def guarded(browser: Browser) -> AsyncIterator[Guarded]:
    opened = await Guarded.open(browser)
    yield opened
    await opened.context.close()


async def facts(page: Page) -> dict[str, Any]:
    return await page.evaluate("window.voicebot")  # type: ignore[no-any-return]


async def wait_state(page: Page, state: str) -> None:
    await page.wait_for_function(
        "s => window.voicebot && window.voicebot.state === s", arg=state, timeout=STATE_TIMEOUT_MS
    )


async def wait_for_answer(page: Page, keywords: tuple[str, ...], after_turn: int = 0) -> dict:
    """Wait until a turn from `after_turn` on has the question's words and a heard reply."""
    try:
        await page.wait_for_function(
            """([words, first]) => {
                const turns = window.voicebot.turns.slice(first);
                return turns.some(t => words.every(w => t.user.toLowerCase().includes(w))
                                       && t.bot.length > 0 && t.latencyMs !== null);
            }""",
            arg=[list(keywords), after_turn],
            timeout=TURN_TIMEOUT_MS,
        )
    except PlaywrightTimeoutError:
        seen = await facts(page)
        pytest.fail(
            f"no turn from {after_turn} on heard {keywords} and a reply; the page "
            f"({seen['state']}, {seen['transport']}) shows: {seen['turns']}"
        )
    seen = await facts(page)
    return next(
        t
        for t in seen["turns"][after_turn:]
        if all(w in t["user"].lower() for w in keywords) and t["bot"]
    )


@pytest.fixture
def log_records() -> Iterator[list[Any]]:
    """Every server log record (DEBUG and up) while the test runs."""
    records: list[Any] = []
    sink = logger.add(lambda message: records.append(message.record), level="DEBUG")
    yield records
    logger.remove(sink)


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_page_hears_and_shows_an_answer(
    transport: str,
    server: LocalServer,
    guarded: Guarded,
    keywords: dict[str, tuple[str, ...]],
    screenshots: Path,
    log_records: list[Any],
) -> None:
    page = await guarded.page()
    await page.goto(f"{server.http_url}/?transport={transport}")
    await page.get_by_role("button", name="Connect").click()
    await wait_state(page, "connected")
    assert (await facts(page))["transport"] == transport

    turn = await wait_for_answer(page, keywords["capital"])
    await page.wait_for_function("window.voicebot.bot.audibleMs >= 300", timeout=TURN_TIMEOUT_MS)
    # What a person sees: their question and the reply in the conversation, and the timing.
    await page.locator(".bubble.user", has_text="capital").first.wait_for()
    await page.locator(".bubble.bot", has_text=turn["bot"][:10]).first.wait_for()
    await page.locator(".stats", has_text="heard after").first.wait_for()
    assert {"stt", "llm", "tts"} <= turn["stages"].keys(), turn
    await screenshot(page, screenshots, f"answer-{transport}")

    await page.get_by_role("button", name="Disconnect").click()
    await wait_state(page, "idle")
    guarded.assert_stayed_local()

    # The person's words reach the log only at DEBUG; Pipecat's routine warnings stay quiet.
    said = [r for r in log_records if r["message"] == "user said"]
    assert said and all(r["level"].name == "DEBUG" for r in said)
    loud = [r for r in log_records if r["level"].no >= logger.level("INFO").no]
    assert not [r for r in loud if "capital" in r["message"] + str(r["extra"]).lower()]
    warnings = [r for r in loud if r["level"].no >= logger.level("WARNING").no]
    assert all(is_routine_warning(r["name"], r["message"]) for r in warnings), [
        (r["name"], r["message"]) for r in warnings
    ]


async def test_reconnect_and_automatic_transport(
    server: LocalServer, guarded: Guarded, keywords: dict[str, tuple[str, ...]]
) -> None:
    page = await guarded.page()
    await page.goto(f"{server.http_url}/?transport=auto")
    connect = page.locator("#connect")
    await connect.click()
    await wait_state(page, "connected")
    # On loopback WebRTC connects, so Auto picks it.
    assert (await facts(page))["transport"] == "webrtc"
    await wait_for_answer(page, keywords["capital"])

    await connect.click()
    await wait_state(page, "idle")
    turns_before = len((await facts(page))["turns"])
    await connect.click()
    await wait_state(page, "connected")
    await wait_for_answer(page, keywords["capital"], after_turn=turns_before)
    notes = (await facts(page))["notes"]
    assert notes.count("Disconnected") == 1 and len([n for n in notes if "Connected" in n]) == 2
    guarded.assert_stayed_local()


async def test_two_tabs_talk_at_once(
    server: LocalServer,
    guarded: Guarded,
    keywords: dict[str, tuple[str, ...]],
    screenshots: Path,
) -> None:
    tabs = [await guarded.page(), await guarded.page()]
    for tab, transport in zip(tabs, ("webrtc", "websocket"), strict=True):
        await tab.goto(f"{server.http_url}/?transport={transport}")
        await tab.locator("#connect").click()
    for tab in tabs:
        await wait_state(tab, "connected")
    await asyncio.gather(*(wait_for_answer(tab, keywords["capital"]) for tab in tabs))
    first, second = [await facts(tab) for tab in tabs]
    assert first["sessionId"] != second["sessionId"]
    await screenshot(tabs[1], screenshots, "two-tabs-second")
    guarded.assert_stayed_local()


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` under uvicorn on a free loopback port; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_loading_state_then_automatic_success(
    settings: Settings,
    models: SharedModels,
    guarded: Guarded,
    keywords: dict[str, tuple[str, ...]],
    screenshots: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While models load the page says so and retries by itself; it connects once they are warm."""
    gate = asyncio.Event()

    async def gated_load(
        state: server_app.ModelState, _settings: Settings, _loading: object = None
    ) -> None:
        await gate.wait()
        state.models = models

    monkeypatch.setattr(server_app.ModelState, "load", gated_load)
    async with serving(server_app.create_app(settings)) as url:
        page = await guarded.page()
        await page.goto(f"{url}/")
        await page.locator("#connect").click()
        await wait_state(page, "loading")
        await page.locator("#message", has_text="loading its models").wait_for()
        assert await page.locator("#connect").inner_text() == "Cancel"
        await screenshot(page, screenshots, "loading")
        await asyncio.sleep(3)  # at least one automatic retry, still refused
        assert (await facts(page))["state"] == "loading"

        gate.set()
        await wait_state(page, "connected")
        await wait_for_answer(page, keywords["capital"])
        await page.locator("#connect").click()
        await wait_state(page, "idle")
    guarded.assert_stayed_local()


async def test_refused_and_unreachable_are_explained(
    server: LocalServer, guarded: Guarded, screenshots: Path
) -> None:
    page = await guarded.page()
    refused_urls: list[str] = []

    async def refuse(route: Any) -> None:
        refused_urls.append(route.request.url)
        await route.fulfill(status=401, json={"detail": "a session token is required"})

    await page.route("**/start?*", refuse)
    await page.route("**/start", refuse)
    await page.goto(f"{server.http_url}/?transport=webrtc")
    await page.locator("#connect").click()
    await wait_state(page, "refused")
    await page.locator("#message", has_text="?session=").wait_for()
    await screenshot(page, screenshots, "refused")

    # With a session link, the page forwards it to the server and says it was refused.
    await page.goto(f"{server.http_url}/?transport=webrtc&session=abc123")
    await page.locator("#connect").click()
    await wait_state(page, "refused")
    await page.locator("#message", has_text="refused this session link").wait_for()
    assert urlsplit(refused_urls[-1]).query == "session=abc123"

    await page.unroute("**/start?*")
    await page.unroute("**/start")
    await page.route("**/start*", lambda route: route.abort("connectionrefused"))
    await page.goto(f"{server.http_url}/?transport=webrtc")
    await page.locator("#connect").click()
    await wait_state(page, "unreachable")
    await page.locator("#message", has_text="could not be reached").wait_for()
    guarded.assert_stayed_local()


async def test_denied_microphone_is_explained(
    playwright: Playwright, server: LocalServer, screenshots: Path
) -> None:
    denying = await playwright.chromium.launch(
        executable_path=chromium_path(),
        args=["--use-fake-device-for-media-stream", "--deny-permission-prompts"],
    )
    try:
        page = await denying.new_page()
        await page.goto(f"{server.http_url}/")
        await page.locator("#connect").click()
        await wait_state(page, "mic-denied")
        await page.locator("#message", has_text="Microphone access was denied").wait_for()
        await screenshot(page, screenshots, "mic-denied")
    finally:
        await denying.close()


SCRIPT_RATE = 22050
# One second of a 440 Hz tone, as the bot's PCM16 audio at SCRIPT_RATE.
SCRIPT_BEEP = (
    (np.sin(np.arange(SCRIPT_RATE) * 2 * np.pi * 440 / SCRIPT_RATE) * 12000)
    .astype(np.int16)
    .tobytes()
)


async def play_script(
    page: Page, server: LocalServer, script: list[tuple[dict[str, Any] | bytes, float]]
) -> list[int]:
    """Connect `page` over WebSocket to a scripted /ws server instead of ours: it sends
    `ready`, then each (message, seconds before the next) of `script`. Returns the sizes
    of the messages the page sends up, filled in as they come."""
    ready = {"type": "ready", "protocol": 1, "session_id": "scripted", "sample_rate": SCRIPT_RATE}
    uploaded: list[int] = []

    async def scripted(ws: Any) -> None:
        ws.on_message(lambda message: uploaded.append(len(message)))
        for item, pause in [(ready, 0.3), *script]:
            ws.send(item if isinstance(item, bytes) else json.dumps(item))
            await asyncio.sleep(pause)

    await page.route_web_socket("**/ws*", scripted)
    await page.goto(f"{server.http_url}/?transport=websocket")
    await page.locator("#connect").click()
    return uploaded


async def test_words_answered_after_their_turn_ended_keep_their_reply(
    server: LocalServer, guarded: Guarded
) -> None:
    """A scripted /ws server, as a busy one behaves: the turn's stop watchdog ends it before
    the transcript reaches the aggregator, the transcript opens a turn of its own, and that
    one is answered. The page shows the question and its reply as one turn."""
    page = await guarded.page()
    await play_script(
        page,
        server,
        [
            ({"type": "user_started_speaking"}, 0.3),
            ({"type": "transcript", "text": "What is the capital of France?", "final": True}, 0.2),
            ({"type": "user_stopped_speaking"}, 0.2),
            ({"type": "user_started_speaking"}, 0.1),
            ({"type": "user_stopped_speaking"}, 0.2),
            ({"type": "bot_started_speaking"}, 0.1),
            ({"type": "bot_text", "text": "Paris."}, 0.1),
            (SCRIPT_BEEP, 0.8),
            ({"type": "bot_stopped_speaking"}, 0.3),
        ],
    )
    await wait_for_answer(page, ("capital", "france"))
    turns = (await facts(page))["turns"]
    assert [(t["user"], t["bot"]) for t in turns] == [("What is the capital of France?", "Paris.")]
    guarded.assert_stayed_local()


async def test_interruption_is_marked_and_bot_audio_is_played(
    server: LocalServer, guarded: Guarded, screenshots: Path
) -> None:
    """A scripted /ws server: the bot is cut off mid-reply and the page marks the reply."""
    page = await guarded.page()
    # The beep plays for a while before the cut.
    uploaded = await play_script(
        page,
        server,
        [
            ({"type": "user_started_speaking"}, 0.3),
            ({"type": "transcript", "text": "Tell me a long story.", "final": True}, 0.3),
            ({"type": "user_stopped_speaking"}, 0.3),
            ({"type": "bot_started_speaking"}, 0.1),
            ({"type": "bot_text", "text": "Once upon a time"}, 0.1),
            (SCRIPT_BEEP, 0.8),
            ({"type": "user_started_speaking"}, 0.3),
            ({"type": "bot_stopped_speaking"}, 0.3),
            ({"type": "transcript", "text": "Stop, thanks.", "final": True}, 0.3),
        ],
    )
    await page.locator(".bubble.user", has_text="Stop, thanks.").wait_for(timeout=STATE_TIMEOUT_MS)
    await page.locator(".bubble.bot .badge", has_text="interrupted").wait_for()
    turns = (await facts(page))["turns"]
    assert [t["interrupted"] for t in turns] == [True, False], turns
    assert [t["user"] for t in turns] == ["Tell me a long story.", "Stop, thanks."]
    # The bot's PCM was played through the AudioWorklet and heard by the analyser.
    assert (await facts(page))["bot"]["audibleMs"] >= 300
    # The microphone went up as 20 ms PCM16 messages at 16 kHz.
    assert uploaded and set(uploaded) == {640}
    await screenshot(page, screenshots, "interrupted")
    guarded.assert_stayed_local()
