"""Speech to text: one module per provider, listed here in the order `voicebot` shows them."""

from voicebot.providers.spec import add_modules

add_modules("stt", ["voicebot.providers.stt.whisper"])
