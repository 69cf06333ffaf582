"""The FastAPI server: the app and its lifespan, the routes, and who may use them."""

from voicebot.server.app import create_app

__all__ = ["create_app"]
