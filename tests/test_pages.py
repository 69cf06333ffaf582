"""The page routes and the server fixes that came with them, without a browser (fast)."""

from __future__ import annotations

import re
import sys

import httpx
import pytest
from loguru import logger

from voicebot.config import Settings
from voicebot.observability.logging import setup_logging
from voicebot.server.app import create_app
from voicebot.server.page import STATIC


@pytest.fixture
async def loading_client(settings: Settings) -> httpx.AsyncClient:
    """A client of an app whose models never load (its lifespan is not run)."""
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def test_our_page_is_served_at_the_root(loading_client: httpx.AsyncClient) -> None:
    async with loading_client as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert '<script type="module" src="static/app.js">' in page.text
        for asset in ("app.js", "transports.js", "audio-worklet.js", "style.css"):
            assert (await http.get(f"/static/{asset}")).status_code == 200, asset


def test_the_page_loads_nothing_from_elsewhere() -> None:
    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "transports.js", "style.css"}
    for path in files:
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
        assert "@import" not in text and "@font-face" not in text, path.name


async def test_prebuilt_page_moved_and_old_links_redirect(
    loading_client: httpx.AsyncClient,
) -> None:
    async with loading_client as http:
        assert (await http.get("/prebuilt/")).status_code == 200
        moved = await http.get("/client/?foo=1")
        assert moved.status_code == 308
        assert moved.headers["location"] == "/prebuilt/?foo=1"
        assert (await http.get("/client")).headers["location"] == "/prebuilt/"


async def test_start_answers_503_while_models_load(loading_client: httpx.AsyncClient) -> None:
    async with loading_client as http:
        reply = await http.post("/start", json={"transport": "webrtc"})
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "2"
        assert "sessionId" not in reply.text


def test_routine_pipecat_warnings_show_only_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    connection = "pipecat.transports.smallwebrtc.connection"

    def from_pipecat(module: str, message: str) -> None:
        logger.patch(lambda record: record.update(name=module)).warning(message)

    try:
        setup_logging("INFO")
        from_pipecat(connection, "No video transceiver is available")
        from_pipecat(connection, "Connection failed, closing")
        err = capsys.readouterr().err
        assert "No video transceiver" not in err
        assert "Connection failed" in err

        setup_logging("DEBUG")
        from_pipecat(connection, "No video transceiver is available")
        assert "No video transceiver" in capsys.readouterr().err
    finally:
        logger.remove()
        logger.add(sys.stderr)
