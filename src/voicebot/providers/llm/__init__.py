"""Language models: one module per provider, listed here in the order `voicebot` shows them."""

from voicebot.providers.spec import add_modules

add_modules(
    "llm",
    [
        "voicebot.providers.llm.llama_cpp",
        "voicebot.providers.llm.transformers",
        "voicebot.providers.llm.groq",
        "voicebot.providers.llm.vllm",
    ],
)
