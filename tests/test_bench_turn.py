"""The turn benchmark's bookkeeping: halves that never share a text, waits and cut-offs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from voicebot.audio.pcm import voiced_samples
from voicebot.bench.turn import summarise, turn_record
from voicebot.errors import InputError
from voicebot.tools import voice_set
from voicebot.tools.client import TurnResult


def test_tune_and_heldout_halves_share_no_text() -> None:
    pairs = voice_set.utterances()
    tune = {u.text for u, _ in pairs if u.half == "tune"}
    heldout = {u.text for u, _ in pairs if u.half == "heldout"}
    assert tune and heldout and not tune & heldout
    assert {u.kind for u, _ in pairs if u.half == "heldout"} == {
        "question",
        "statement",
        "request",
        "paused",
    }
    # Each text in three different voices, one of them Kokoro; several in each half.
    kokoro = {v for v, _, _ in voice_set.KOKORO_VOICES}
    for u, _ in pairs:
        voices = [v for u2, v in pairs if u2.text == u.text]
        assert len(set(voices)) == 3 and len(kokoro.intersection(voices)) == 1, u.text
    assert len({v for u, v in pairs if u.half == "heldout"}) >= 4
    # Both Kokoro voices say each kind of text in each half.
    for half in ("tune", "heldout"):
        for kind in ("question", "statement", "request", "paused"):
            said = {v for u, v in pairs if u.half == half and u.kind == kind}
            assert kokoro <= said, (half, kind)


def _result(kinds: list[str], latency: float, ttft: float, ttfb: float) -> TurnResult:
    return TurnResult(
        transcript="x",
        reply="y",
        reply_audio=b"\0\0" * 100,
        sample_rate=22050,
        turn_latency_ms=latency,
        stages={"llm_ttft_ms": ttft, "tts_ttfb_ms": ttfb},
        events=[{"type": k} for k in kinds],
    )


def test_a_turn_that_waited_out_the_silence_limit_is_counted() -> None:
    prompt = ["transcript", "bot_started_speaking", "bot_stopped_speaking"]
    quick = turn_record(_result(prompt, 900, 200, 150), max_silence_secs=2.0)
    slow = turn_record(_result(prompt, 2600, 200, 150), max_silence_secs=2.0)
    assert not quick["waited_for_max_silence"] and slow["waited_for_max_silence"]
    assert quick["llm_started_after_ms"] == 550


def test_a_reply_before_the_last_words_were_transcribed_is_a_cut_off() -> None:
    cut = ["transcript", "bot_started_speaking", "transcript", "bot_stopped_speaking"]
    record = turn_record(_result(cut, 900, 200, 150), max_silence_secs=2.0)
    assert record["cut_off"]
    summary = summarise([{**record, "kind": "paused"}])
    assert summary["paused_cut_off"] == 1 and summary["cut_off"] == 1
    # The bundled samples have no kind: counted as turns, none of them paused.
    samples = summarise([record, record])
    assert samples["cut_off"] == 2 and samples["paused"] == 0


def test_a_turn_ended_twice_in_one_utterance_is_a_cut_off() -> None:
    # The words before the pause ended a turn of their own; that reply was cut short
    # unheard and the words after the pause were answered as another turn.
    split = [
        "user_started_speaking",
        "transcript",
        "user_stopped_speaking",
        "user_started_speaking",
        "transcript",
        "user_stopped_speaking",
        "bot_started_speaking",
        "bot_stopped_speaking",
    ]
    record = turn_record(_result(split, 900, 200, 150), max_silence_secs=2.0)
    assert record["cut_off"] and record["turn_ends"] == 2
    whole = turn_record(_result(split[3:], 900, 200, 150), max_silence_secs=2.0)
    assert not whole["cut_off"] and whole["turn_ends"] == 1


def test_the_server_timeline_is_summarised_as_step_and_gap_medians() -> None:
    turns = []
    for vad_stop, stt_done in ((250.0, 800.0), (270.0, 900.0), (290.0, 1000.0)):
        result = _result(["transcript"], 1500, 200, 150)
        result.server_timeline_ms = {"vad_stop": vad_stop, "stt_done": stt_done}
        # 0.5 s of audio arriving 1 s late after the first 0.1 s: a gap a listener hears.
        result.reply_audio = bytes(2 * 22050)
        result.audio_arrivals = [(10.0, 4410), (11.2, 22050)]
        turns.append(turn_record(result, max_silence_secs=2.0))
    summary = summarise(turns)
    assert summary["server_timeline_median_ms"] == {"vad_stop": 270.0, "stt_done": 900.0}
    assert summary["server_gaps_median_ms"] == {
        "speech_end->vad_stop": 270.0,
        "vad_stop->stt_done": 630.0,
    }
    assert turns[0]["playback_gap_ms"] == 1000
    assert summary["turns_with_playback_gaps"] == 3


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_the_unseen_set_is_spoken(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import soundfile as sf

    spoken = voice_set.synthesise(tmp_path, "heldout")
    assert len(spoken) == len([1 for u, _ in voice_set.utterances() if u.half == "heldout"])
    for utterance, _voice, path in spoken:
        audio, rate = sf.read(path)
        assert len(audio) / rate > 1.0, utterance.name
        if utterance.kind == "paused":
            # The 700 ms pause, below the voiced level: espeak-ng's break begins in the
            # fading end of a word (0.61-0.71 s of it), Piper adds its own silence.
            voiced = voiced_samples((audio * 32767).astype(np.int16))
            assert 0.6 <= np.diff(voiced).max() / rate < 1.0, utterance.name
    assert {v for _, v, _ in spoken} >= {v for v, _, _ in voice_set.KOKORO_VOICES}
    # A Kokoro voice that is not bundled is named in the error, with the ones that are.
    with pytest.raises(InputError, match="jm_kumo"):
        voice_set.speak("Hello there.", "kokoro:af_heart", 100, tmp_path / "x.wav")
