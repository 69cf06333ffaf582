"""The FastAPI server: the app and its lifespan, the routes, and who may use them.

`create_app` is imported on first use: `voicebot serve` checks its exposure
(`server.auth`) and starts loading the models before it imports the app, FastAPI and
Pipecat, so that the imports overlap the loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicebot.server.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from voicebot.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
