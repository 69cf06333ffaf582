"""A reply stopped at `llm.max_tokens` ends on its last finished sentence.

Fast tests: our in-process LLM base over a stand-in model (a word a token), and Groq's
service against a local OpenAI-compatible server, both through Pipecat's TTS base and
assistant aggregator. The slow test asks the bundled SmolLM2 through llama.cpp.
"""

from __future__ import annotations

from typing import Any

import pytest
from pipecat.frames.frames import Frame, LLMContextFrame, TTSTextFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import LLMService
from pipecat.tests.utils import SleepFrame, run_test

from tests.fakes import FakeTTSService, WordsLocalLLM
from tests.helpers import tweak
from tests.servers.openai_compat import openai_compat_server
from voicebot.config import Settings
from voicebot.models import SharedModels
from voicebot.processors.reply_limit import (
    ReplyStoppedAtLimitFrame,
    drop_unfinished_sentence,
    ends_mid_sentence,
    unfinished_after_spoken_words,
)
from voicebot.processors.text_clause import speak_first_clause_early
from voicebot.providers import spec as providers
from voicebot.providers.llm.groq import BoundedGroqLLMService


class Heard(FrameProcessor):
    """The frames that reach the transport."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.frames.append(frame)
        await self.push_frame(frame, direction)


async def _answer(
    llm: LLMService[Any], *, first_clause_words: int = 4
) -> tuple[FakeTTSService, Heard, list[Any]]:
    """`llm`'s reply to one question, spoken by a TTS stage built as a session's; returns
    the TTS, what reached the transport, and the context's messages afterwards."""
    tts = FakeTTSService()
    if first_clause_words:
        speak_first_clause_early(tts, first_clause_words)
    drop_unfinished_sentence(tts)
    context = LLMContext(messages=[{"role": "user", "content": "Can you help me?"}])
    heard = Heard()
    assistant = LLMContextAggregatorPair(context).assistant()
    await run_test(
        Pipeline([llm, tts, heard, assistant]),
        frames_to_send=[LLMContextFrame(context), SleepFrame(sleep=0.5)],
    )
    return tts, heard, [m.get("content") for m in context.messages if isinstance(m, dict)]


CUT = "Sure. I can help with that. Here is what I would do first."


@pytest.mark.parametrize("first_clause_words", [4, 0])
async def test_a_reply_stopped_at_the_limit_is_not_spoken_to_its_last_word(
    first_clause_words: int,
) -> None:
    llm = WordsLocalLLM(reply=CUT, word_delay_s=0.005, max_tokens=9)  # "... Here is what"
    tts, heard, messages = await _answer(llm, first_clause_words=first_clause_words)
    assert tts.texts == ["Sure.", "I can help with that."]
    assert [f.text for f in heard.frames if isinstance(f, ReplyStoppedAtLimitFrame)] == [
        "Sure. I can help with that. Here is what"
    ]
    # The history holds what was said, so the next turn does not build on the fragment.
    assert messages[-1] == "Sure. I can help with that."


@pytest.mark.parametrize(
    ("reply", "max_tokens", "spoken"),
    [
        # The whole reply is one unfinished sentence: it is said rather than nothing.
        ("I would suggest that you try the soup.", 5, ["I would suggest that you"]),
        # Stopped right after a sentence's end: nothing is unfinished.
        ("Sure. That is fine. More later.", 4, ["Sure.", "That is fine."]),
        # Ended on its own, below the limit, even without a final period.
        ("Sure. I can help with that. Here", 80, ["Sure.", "I can help with that.", "Here"]),
    ],
)
async def test_a_reply_with_nothing_unfinished_after_spoken_words_is_spoken_whole(
    reply: str, max_tokens: int, spoken: list[str]
) -> None:
    llm = WordsLocalLLM(reply=reply, word_delay_s=0.005, max_tokens=max_tokens)
    tts, _, messages = await _answer(llm)
    assert tts.texts == spoken
    assert messages[-1] == " ".join(spoken)


async def test_groqs_reply_stopped_at_the_limit_is_not_spoken_to_its_last_word(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with openai_compat_server() as server:
        server.reply = CUT
        monkeypatch.setenv("GROQ_BASE_URL", server.root)
        llm = BoundedGroqLLMService(
            api_key="gsk_test",
            settings=BoundedGroqLLMService.Settings(model="groq-model", max_tokens=9),
        )
        tts, _, messages = await _answer(llm)
        # The server stopped at 9 words and said so (finish_reason "length").
        assert server.requests[0]["body"]["max_tokens"] == 9
        assert tts.texts == ["Sure.", "I can help with that."]
        assert messages[-1] == "Sure. I can help with that."
        server.reply = "Sure. I can help with that."
        server.requests.clear()
        tts, _, _ = await _answer(llm)
        assert tts.texts == ["Sure.", "I can help with that."]


def test_a_reply_that_stops_without_final_punctuation_ends_mid_sentence() -> None:
    assert ends_mid_sentence("I'm here to help, not")
    assert ends_mid_sentence("It's a joke about the ")
    assert not ends_mid_sentence("Sure, I can help with that.")
    assert not ends_mid_sentence('He said "go!"')
    assert not ends_mid_sentence("Really?)")
    assert not ends_mid_sentence("")


def test_only_an_unfinished_tail_after_spoken_words_is_dropped() -> None:
    reply = "Sure. I can help with that. Here is"
    assert unfinished_after_spoken_words(reply, "Here is")
    assert unfinished_after_spoken_words(reply + " ", " Here is ")
    assert not unfinished_after_spoken_words(reply, "")
    assert not unfinished_after_spoken_words("Here is", "Here is")  # nothing said before
    assert not unfinished_after_spoken_words("Sure. That is fine.", "That is fine.")
    assert not unfinished_after_spoken_words('Sure. He said "go."', 'He said "go."')
    assert not unfinished_after_spoken_words("Sure. Is it?", "Is it?")
    # Not the reply's tail (the TTS changed the text): left as it is.
    assert not unfinished_after_spoken_words(reply, "Something else")


@pytest.mark.slow
async def test_smollm2_stopped_at_the_limit_ends_on_a_finished_sentence(
    settings: Settings, models: SharedModels
) -> None:
    # A few sentences in, mid-sentence (checked below: the model stopped at the limit).
    settings = tweak(settings, llm={"max_tokens": 40, "temperature": 0.0})
    spec = providers.chosen(settings, "llm")[0]
    assert spec.id == "llama_cpp"
    llm = spec.build(settings, models.get(spec))
    context = LLMContext(
        messages=[{"role": "user", "content": "Tell me about the history of bread in detail."}]
    )
    tts = FakeTTSService()
    speak_first_clause_early(tts, 4)
    drop_unfinished_sentence(tts)
    heard = Heard()
    await run_test(
        Pipeline([llm, tts, heard]), frames_to_send=[LLMContextFrame(context), SleepFrame(1.0)]
    )
    (cut,) = [f for f in heard.frames if isinstance(f, ReplyStoppedAtLimitFrame)]
    spoken = " ".join(f.text for f in heard.frames if isinstance(f, TTSTextFrame))
    assert tts.texts and tts.texts[-1].rstrip("\"')*")[-1] in ".!?", tts.texts
    assert spoken and len(spoken) < len(cut.text)
