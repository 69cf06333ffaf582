"""voicebot: a real-time voice assistant server on Pipecat."""

__version__ = "0.1.0"
