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
audio below the voiced level since the last voiced sample (`quiet_s`). Where the speech
was loud enough to tell, the quiet is the pause (`pause_s`). The VAD's count is off at
both edges of a pause:
- usually it starts late (Pipecat smooths the volume and Silero's confidence falls over
  a few windows, so the VAD still reports speech for ~0.1 s after the last voiced sample);
- on a soft word ending before a pause in mid-sentence, Silero's confidence falls while
  the word still sounds, and its silence starts before the last voiced sample;
- when speech comes back, Silero notices it a few windows late.
On the tune half of `voicebot bench loop`'s voice set the VAD's count of a pause in
mid-sentence was 0.10-0.16 s longer than its quiet (0.68-0.70 s), and a 0.8 s floor
counted on it cut two of them off. The VAD's count still decides on a line whose noise
keeps reaching the voiced level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from pipecat.audio.vad.vad_analyzer import VADState

# listener(True): a silence has lasted `after_secs`; listener(False): speech came back.
Listener = Callable[[bool], None]
# watcher(): a chunk of audio has been counted (`pause_s`, `hearing_voice` may have moved).
Watcher = Callable[[], None]

# A voiced sound after this much quiet is speech coming back (Silero usually notices it
# within ~0.15 s) or a noise: the pause holds its count this long to tell, and the sound
# is a voice heard while it goes on (`hearing_voice`: Silero took up to 0.52 s in 40 ms
# pieces, and a held turn must not end meanwhile). And where the VAD's
# count of a pause runs more than this ahead of the quiet (its edges came to 0.10-0.16 s),
# noise keeps reaching the level on this line: the VAD's count decides.
TELL_S = 0.2
# Silero's confidence can dip for a window or two at the end of a word and come back on
# the quiet after it (STOPPING, then SPEAKING on audio below the voiced level): speech
# again after less VAD silence than this is the same stretch of speech, not speech that
# came back softly after a pause.
DIP_S = 0.1


class SilenceOnset:
    """Follows one VAD analyzer's states; sync listeners run on the event loop."""

    def __init__(self, after_secs: float, stop_secs: float) -> None:
        self.after_secs = after_secs
        # The silence still to come before the VAD's stop, once listeners are told.
        self.rest_secs = max(0.0, stop_secs - after_secs)
        self._listeners: list[Listener] = []
        self._watchers: list[Watcher] = []
        self._silent_s = 0.0
        self._told = False
        # A voice is heard: speech, its first windows before the VAD confirms it, or voiced
        # audio going on after a pause (a sound held to tell, `TELL_S`).
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
        # A sound after `TELL_S` of quiet: the pause when it came, and the audio since.
        self._sound: tuple[float, float] | None = None

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def watch(self, watcher: Watcher) -> None:
        """Call `watcher` after every chunk is counted: a wait on the pause's length wakes
        on the audio that makes it, not on a timer (turns/speculative.py)."""
        self._watchers.append(watcher)

    @property
    def pause_s(self) -> float:
        """How long the pause has lasted in audio: the quiet since the last voiced sample
        where the speech was loud enough to tell; the VAD's count for speech too soft to
        tell, or where noise keeps the quiet count more than `TELL_S` behind it.

        A sound after `TELL_S` of quiet holds the count where it was for `TELL_S`: speech
        coming back is confirmed by then (and the pause is over); a click, a breath or a
        bump is not, and the pause goes on from where it was, the sound included."""
        if not self._loud_speech:
            return self.silence_s
        if self._sound is None:
            own = self.quiet_s
        else:
            at_sound, since = self._sound
            if since < TELL_S:
                return at_sound
            own = _added(at_sound, since)
        return self.silence_s if self.silence_s - own > TELL_S else own

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
        if state == VADState.SPEAKING:
            self._sound = None
            if self.silence_s >= DIP_S:
                self._loud_speech = False  # speech again: it must be loud again to be told
        elif voiced and self._loud_speech and self.quiet_s >= TELL_S:
            self._sound = (self.pause_s, 0.0)
        if self._sound is not None and state != VADState.STARTING:
            # A voice the VAD has not confirmed yet holds the count until it is speech
            # (the pause is over) or fades (the pause goes on).
            self._sound = (self._sound[0], _added(self._sound[1], seconds))
        self.hearing_voice = state in (VADState.STARTING, VADState.SPEAKING) or bool(
            voiced and self._sound is not None
        )
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
        else:
            if state == VADState.SPEAKING and self._told:
                self._tell(False)
            # SPEAKING: the silence is over; QUIET: the VAD confirmed the stop (or none began).
            self._silent_s, self._told = 0.0, False
        for watcher in self._watchers:
            watcher()

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
