"""What our sentence-at-a-time TTS services share: one audio context spans a reply's pauses.

Pipecat's TTSService ends an audio context when nothing arrives for `stop_frame_timeout_s`
(3 s by default): it pushes a TTSStoppedFrame, so the transport reports the bot stopped
speaking mid-reply, and when no audio had come yet it reports "TTS context ... completed
with no audio" as an error. The late audio still plays (Pipecat reopens the context), but
after that "bot stopped speaking": a client that waits for the end of the reply has moved
on, and a sound in the gap starts a new user turn that cuts the rest of the reply. Piper
or Kokoro on a loaded CPU (Piper's real-time factor reached 1.75 at load 20-30), or an LLM
slow between two sentences, pause longer than 3 s.

These services synthesise each sentence inside `run_tts`, so Pipecat closes the reply's
context when the reply ends (LLMFullResponseEndFrame, or the end of a TTSSpeakFrame), not
on the idle limit. The limit therefore only bounds a pause inside one reply, and a long
one costs nothing; `close_silent_reply_context` covers the one case Pipecat leaves to the
limit (a reply whose last piece produced no audio). A true silence still ends "bot
speaking" at the transport, which does so after 3 s with nothing to play.
"""

from __future__ import annotations

from pipecat.services.tts_service import TTSService

from voicebot.pipecat_compat import close_silent_reply_context

# Longest pause inside one reply that keeps its audio context open, on any device: longer
# than any sentence takes on a CPU at load 30 or a loaded LLM's gap between two sentences.
REPLY_PAUSE_LIMIT_S = 30.0


class SentenceTTSService(TTSService):
    """Base (or mixin, listed first) for services whose `run_tts` yields a sentence's audio.

    Build them with `stop_frame_timeout_s=REPLY_PAUSE_LIMIT_S`; it defines no __init__, so
    a subclass that must skip its Pipecat parent's __init__ can still use it.
    """

    async def on_turn_context_completed(self) -> None:
        await close_silent_reply_context(self)
        await super().on_turn_context_completed()
