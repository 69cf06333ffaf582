"""Transports: our WebSocket protocol and Pipecat's SmallWebRTC, served by FastAPI."""
