"""Text to speech: one module per provider, listed here in the order `voicebot` shows them."""

from voicebot.providers.spec import add_modules

add_modules(
    "tts",
    [
        "voicebot.providers.tts.piper",
        "voicebot.providers.tts.kokoro",
        "voicebot.providers.tts.edge",
        "voicebot.providers.tts.azure",
    ],
)
