"""The moment a pause begins, before the VAD confirms it: Whisper can start then.

Pipecat's VAD reports that the person stopped only after `vad.stop_secs` (0.2 s) of
silence, and a segmented STT starts transcribing only then. The VAD's state machine knows
earlier: its state turns STOPPING at the first silent window. `SilenceOnset` follows the
states the session's VAD analyzer returns and tells its listeners when a silence has lasted
`after_secs` (`stt.early_start_secs`) and when speech came back before the stop. Whisper
starts on the words so far at the first, and the result is used if the stop confirms the
pause with no speech in between (`FasterWhisperSTTService`).

It also counts how long the pause has lasted, in audio, for the turn's floor
(`turn.min_silence_secs`): the audio the VAD has judged silent (`silence_s`), and the
audio below the voiced level since the last voiced sample (`quiet_s`). Where the speech was
loud enough to tell, the quiet is the pause. The VAD's count is off at both edges:
- usually it starts late (Pipecat smooths the volume and Silero's confidence falls over
  a few windows, so the VAD still reports speech for ~0.1 s after the last voiced sample);
- on a soft word ending before a pause in mid-sentence, Silero's confidence falls while
  the word still sounds, and its silence starts before the last voiced chunk;
- when speech comes back, Silero notices it a few windows late.
On the tune half of `voicebot bench loop`'s voice set the VAD's count of a pause in
mid-sentence was 0.10-0.16 s longer than its quiet (0.68-0.70 s), and a 0.8 s floor
counted on it cut two of them off. The VAD's count less `VAD_EDGES_S` still ends a
pause whose noise keeps reaching the voiced level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from pipecat.audio.vad.vad_analyzer import VADState

# listener(True): a silence has lasted `after_secs`; listener(False): speech came back.
Listener = Callable[[bool], None]

# How much of the VAD's silence may be sound at its edges: the end of a soft word before
# it, speech coming back that Silero has not noticed yet after it.
VAD_EDGES_S = 0.2


class SilenceOnset:
    """Follows one VAD analyzer's states; sync listeners run on the event loop."""

    def __init__(self, after_secs: float, stop_secs: float) -> None:
        self.after_secs = after_secs
        # The silence still to come before the VAD's stop, once listeners are told.
        self.rest_secs = max(0.0, stop_secs - after_secs)
        self._listeners: list[Listener] = []
        self._silent_s = 0.0
        self._told = False
        # The VAD hears a voice: speech, or its first windows before the VAD confirms it.
        self.hearing_voice = False
        # Seconds of audio the VAD has judged silent since it last heard speech: the
        # pause as far as the VAD has got, which on a busy machine lags the clock.
        self.silence_s = 0.0
        # Seconds of audio below the voiced level (audio/pcm.py) since the last voiced
        # chunk, and whether the VAD's latest stretch of speech had a voiced chunk: a
        # microphone too quiet to reach the level, or speech that came back softly after
        # a pause, leaves the count to the VAD alone.
        self.quiet_s = 0.0
        self._loud_speech = False

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def pause_s(self) -> float:
        """How long the pause has lasted in audio: the quiet since the last voiced sample
        where the speech was loud enough to tell, and the VAD's count less its edges
        (the longer: noise that keeps the quiet count short does not hold the pause open
        for ever); the VAD's count alone for speech too soft to tell."""
        if not self._loud_speech:
            return self.silence_s
        return max(self.quiet_s, self.silence_s - VAD_EDGES_S)

    def observe(
        self,
        state: VADState,
        seconds: float,
        voiced: bool | None = None,
        quiet_after_s: float = 0.0,
    ) -> None:
        """The state the analyzer returned for a chunk of `seconds` of audio, whether the
        chunk was voiced (None: not known, the VAD's count alone tells the pause), and for
        a voiced one, the quiet after its last voiced sample."""
        self.hearing_voice = state in (VADState.STARTING, VADState.SPEAKING)
        if state == VADState.SPEAKING and self.silence_s > 0:
            self._loud_speech = False  # speech again: it must be loud again to be told
        if voiced:
            self.quiet_s = quiet_after_s
            self._loud_speech = self._loud_speech or state == VADState.SPEAKING
        else:
            self.quiet_s = _added(self.quiet_s, seconds)
            self._loud_speech = self._loud_speech and voiced is not None
        if state == VADState.SPEAKING:
            self.silence_s = 0.0
        elif state != VADState.STARTING:  # an unconfirmed voice neither counts nor resets
            self.silence_s = _added(self.silence_s, seconds)
        if state == VADState.STOPPING:
            self._silent_s += seconds
            if not self._told and self._silent_s >= self.after_secs > 0:
                self._told = True
                self._tell(True)
            return
        if state == VADState.SPEAKING and self._told:
            self._tell(False)
        # SPEAKING: the silence is over; QUIET: the VAD confirmed the stop (or none began).
        self._silent_s, self._told = 0.0, False

    def _tell(self, silent: bool) -> None:
        for listener in self._listeners:
            listener(silent)


def _added(total_s: float, seconds: float) -> float:
    """`total_s + seconds` to the microsecond: in floats, ten 20 ms steps add up to
    0.1999... s, and a mark of 0.2 s would wait one step more."""
    return round(total_s + seconds, 6)


@runtime_checkable
class StartsOnPauses(Protocol):
    """An STT that can start on a pause before the VAD's stop."""

    def start_on_pauses(self, onset: SilenceOnset) -> None: ...
