"""What a server shows to anyone who can reach it: API docs off by default, origins checked."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers import tweak
from voicebot.config import Settings
from voicebot.server.app import create_app

DOC_PATHS = ("/docs", "/redoc", "/openapi.json")


@pytest.mark.parametrize("path", DOC_PATHS)
def test_api_docs_are_off_by_default(settings: Settings, path: str) -> None:
    assert settings.server.api_docs is False
    client = TestClient(create_app(settings))
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("path", DOC_PATHS)
def test_api_docs_can_be_turned_on(settings: Settings, path: str) -> None:
    client = TestClient(create_app(tweak(settings, server={"api_docs": True})))
    response = client.get(path)
    assert response.status_code == 200
    assert "voicebot" in response.text
