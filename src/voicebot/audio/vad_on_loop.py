"""VAD analysis on the event loop, each chunk's state told to the session's `SilenceOnset`."""

from __future__ import annotations

from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADState

from voicebot.audio.pcm import quiet_after_voice
from voicebot.audio.silence_onset import SilenceOnset
from voicebot.pipecat_compat import analyze_on_this_thread


class OnLoopVADAnalyzer(VADAnalyzer):
    """Pipecat's `VADAnalyzer` with `analyze_audio` run where it is called, the event loop.

    Pipecat hands every chunk to a thread of the analyzer's own. voicebot's models there
    are small: Silero scores a 32 ms window in ~0.14 ms on one ONNX thread, the energy VAD
    in microseconds. The hand-off (a thread woken, the GIL passed twice, the event loop
    woken for the result) cost more CPU than the model: without it, a session streaming
    silence takes ~0.8% of a core less (README_PIPECAT.md, "CPU per turn").
    The event loop is busy for the ~0.2 ms a window takes (Silero and Pipecat's volume).
    """

    # Told each chunk's state, so the STT can start on a pause before the stop.
    silence_onset: SilenceOnset | None = None

    async def analyze_audio(self, buffer: bytes) -> VADState:
        state = analyze_on_this_thread(self, buffer)
        if self.silence_onset is not None:
            quiet = quiet_after_voice(buffer)
            self.silence_onset.observe(
                state,
                len(buffer) / 2 / self.sample_rate,
                voiced=quiet is not None,
                quiet_after_s=(quiet or 0) / self.sample_rate,
            )
        return state
