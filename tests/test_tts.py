"""TTS with the real bundled voices: intelligible, no lead-in silence, first clause early."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import edge_tts
import numpy as np
import pytest
import soundfile as sf
import soxr
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.tests.utils import run_test
from pipecat.utils.text.base_text_aggregator import TextType
from piper.config import SynthesisConfig

from tests.helpers import hear, heard_stems, run_voicebot, tweak, words
from tests.servers.edge import edge_server
from voicebot.config import AzureSettings, Secrets, Settings, load_settings
from voicebot.models import SharedModels
from voicebot.processors.text_clause import FirstClauseTextAggregator, speak_first_clause_early
from voicebot.providers import spec as providers
from voicebot.providers.tts.edge import EdgeTTSService
from voicebot.providers.tts.fallback import FallbackTTSService
from voicebot.providers.tts.kokoro import SharedKokoroTTSService
from voicebot.providers.tts.piper import PiperTTSService


def reply_frames(text: str) -> list[object]:
    """A reply as the LLM streams it: word by word between start and end frames."""
    tokens = [LLMTextFrame(t + " ") for t in text.split(" ")]
    return [LLMFullResponseStartFrame(), *tokens, LLMFullResponseEndFrame()]


def leading_silence_ms(audio: np.ndarray, rate: int) -> float:
    """Milliseconds before the first sample above -46 dBFS (the trimmer's idea of silence)."""
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 160)
    return 1000 * loud[0] / rate if loud.size else float("inf")


async def _speak(
    models: SharedModels, text: str, *, first_clause_words: int = 0
) -> tuple[list[str], np.ndarray, int]:
    tts = PiperTTSService(voice=models.model("tts", "piper"), voice_name="en_US-joe-medium")
    if first_clause_words:
        speak_first_clause_early(tts, first_clause_words)
    rate = models.model("tts", "piper").config.sample_rate
    down, _ = await run_test(
        tts,
        frames_to_send=reply_frames(text),
        pipeline_params=PipelineParams(audio_out_sample_rate=rate),
    )
    texts = [f.text for f in down if isinstance(f, TTSTextFrame)]
    audio = np.frombuffer(
        b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame)), np.int16
    )
    return texts, audio, rate


async def test_piper_speaks_intelligibly_without_lead_in_silence(models: SharedModels) -> None:
    _, audio, rate = await _speak(models, "The weather is sunny today. Enjoy your walk.")
    # Piper alone starts with ~40-50 ms of silence; trimmed, 10 ms of lead-in are left.
    assert leading_silence_ms(audio, rate) < 25
    assert {"weather", "sunny", "walk"} <= transcribe(models, audio, rate)


def spins_between_operators(session: Any) -> str:
    return str(
        session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
    )


def test_local_voices_sleep_between_operators(models: SharedModels, voices: SharedModels) -> None:
    # Beside the LLM, spinning workers cost Piper ~15% more CPU per sentence
    # (threads.sleeping_onnx_options); the voice is still read from its .onnx.json.
    piper = models.model("tts", "piper")
    assert spins_between_operators(piper.session) == "0"
    assert piper.config.sample_rate == 22050
    kokoro = voices.model("tts", "kokoro")
    assert kokoro is not None
    assert spins_between_operators(kokoro.sess) == "0"


async def test_long_first_sentence_starts_at_its_first_clause(models: SharedModels) -> None:
    reply = "When it is raining outside, it is best to wear a coat and boots. Stay dry."
    texts, _, _ = await _speak(models, reply, first_clause_words=4)
    assert texts[0].startswith("When it is raining outside,") and "coat" not in texts[0]
    whole, _, _ = await _speak(models, reply)
    assert "coat" in whole[0]  # without it, the first piece is the whole sentence


@pytest.mark.slow
async def test_first_clause_rules() -> None:
    async def pieces(text: str, min_words: int = 4) -> list[str]:
        aggregator = FirstClauseTextAggregator(
            min_words=min_words, aggregation_type=TextType.SENTENCE
        )
        out = []
        for token in text.split(" "):
            async for piece in aggregator.aggregate(token + " "):
                out.append(piece.text)
        rest = await aggregator.flush()
        return out + ([rest.text] if rest else [])

    assert await pieces("Yes, I can. Sure, fine.") == [
        "Yes, I can.",
        "Sure, fine.",
    ]  # too short to cut
    assert await pieces("We sold more than 1,000 books, then we stopped.") == [
        "We sold more than 1,000 books,",
        "then we stopped.",
    ]
    assert await pieces("First part of it, second. Third part of it, fourth.") == [
        "First part of it,",
        "second.",
        "Third part of it, fourth.",  # only the first piece of a reply is cut
    ]
    # Nothing to say (a closing quote, markdown) never becomes a silent TTS context.
    assert await pieces("It is a tale of honor. **") == ["It is a tale of honor."]


# --- Kokoro -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def voices(settings: Settings) -> SharedModels:
    both = tweak(settings, tts={"provider": "kokoro", "fallback": "piper"})
    return SharedModels.load(both, stages=("tts",))


def transcribe(models: SharedModels, audio: np.ndarray, rate: int) -> set[str]:
    return words(hear(models, audio, rate))


async def _run(tts: TTSService, text: str, rate: int) -> tuple[list[Frame], list[Frame]]:
    down, up = await run_test(
        tts,
        frames_to_send=reply_frames(text),
        pipeline_params=PipelineParams(audio_out_sample_rate=rate),
    )
    return list(down), list(up)


def _audio(frames: list[Frame]) -> np.ndarray:
    return np.frombuffer(
        b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame)), np.int16
    )


async def test_kokoro_bundled_int8_is_intelligible_and_streams_by_sentence(
    models: SharedModels, voices: SharedModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert voices.model("tts", "kokoro") is not None
    tts = SharedKokoroTTSService(kokoro=voices.model("tts", "kokoro"), voice="jf_alpha")
    events: list[str] = []
    original = tts.run_tts

    async def spy(text: str, context_id: str) -> Any:
        events.append(f"start {text}")
        async for frame in original(text, context_id):
            if isinstance(frame, TTSAudioRawFrame) and events[-1] != f"audio {text}":
                events.append(f"audio {text}")
            yield frame

    monkeypatch.setattr(tts, "run_tts", spy)
    reply = "Paris is the capital of France. It is a beautiful city. Many people visit it."
    down, _ = await _run(tts, reply, 24000)
    audio = _audio(down)
    assert leading_silence_ms(audio, 24000) < 25
    assert {"capital", "france", "city"} <= transcribe(models, audio, 24000)
    # The first sentence was heard before the last one was even handed to Kokoro.
    first_audio = events.index("audio Paris is the capital of France.")
    assert first_audio < events.index("start Many people visit it.")


def test_kokoro_rejects_an_unknown_voice(voices: SharedModels) -> None:
    assert voices.model("tts", "kokoro") is not None
    with pytest.raises(ValueError, match=r"tts\.kokoro\.voice='af_nobody'"):
        SharedKokoroTTSService(kokoro=voices.model("tts", "kokoro"), voice="af_nobody")


# --- Edge (real edge-tts client against a local server speaking its protocol) -----------


@pytest.fixture
async def edge(models: SharedModels, monkeypatch: pytest.MonkeyPatch) -> Any:
    assert models.model("tts", "piper") is not None
    piper_rate = models.model("tts", "piper").config.sample_rate

    # Without Piper's sampling noise the server says the same audio on every run, so what
    # Whisper hears in it (a cut MP3 stream included) does not change from run to run.
    steady = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)

    def speak(text: str) -> np.ndarray:
        voice = models.model("tts", "piper")
        pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize(text, syn_config=steady))
        audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768
        return (soxr.resample(audio, piper_rate, 24000) * 32767).astype(np.int16)

    async with edge_server(speak) as server:
        # Only the service URL changes: edge-tts's own client code does everything else.
        monkeypatch.setattr(edge_tts.communicate, "WSS_URL", server.url)
        yield server


def edge_tts_service(**kwargs: Any) -> EdgeTTSService:
    return EdgeTTSService(voice="en-US-AriaNeural", rate="+10%", **kwargs)


async def test_edge_streams_mp3_decoded_to_pcm(models: SharedModels, edge: Any) -> None:
    down, up = await _run(edge_tts_service(), "Good morning. The train leaves at noon.", 24000)
    audio = _audio(down)
    assert edge.requests == ["Good morning.", "The train leaves at noon."]
    assert leading_silence_ms(audio, 24000) < 25  # MP3 encoder delay and lead-in trimmed
    assert {"morning", "train", "noon"} <= transcribe(models, audio, 24000)
    assert not [f for f in up if isinstance(f, ErrorFrame)]


async def test_edge_mid_stream_disconnect_keeps_what_arrived(
    models: SharedModels, edge: Any
) -> None:
    edge.mode = "drop"
    fruit = "Apples, bananas, cherries, grapes, lemons, mangoes, oranges and pears."
    down, _ = await asyncio.wait_for(_run(edge_tts_service(), fruit, 24000), 20)
    audio = _audio(down)
    heard = transcribe(models, audio, 24000)
    # The first half arrived and was decoded; the rest never came, and nothing hangs.
    # (Heard here: apples, bananas, cherries, grapes; one word may differ on another CPU.)
    assert len(heard_stems({"apple", "banana", "cherr", "grape"}, heard)) >= 3, heard
    assert not heard_stems({"orange", "pear"}, heard), heard


# --- Fallback ---------------------------------------------------------------------------


class _BrokenTTS(TTSService):
    """A provider whose synthesis raises, as a crashed SDK would."""

    def __init__(self) -> None:
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=None, voice=None, language=None),
        )

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        raise RuntimeError("synthesizer crashed")
        yield  # pragma: no cover


def _piper(models: SharedModels) -> PiperTTSService:
    assert models.model("tts", "piper") is not None
    return PiperTTSService(voice=models.model("tts", "piper"), voice_name="en_US-joe-medium")


@pytest.mark.parametrize("failure", ["raises", "stalls", "refuses"])
async def test_fallback_speaks_the_same_text_in_the_same_turn(
    models: SharedModels, edge: Any, failure: str
) -> None:
    if failure == "raises":
        primary: TTSService = _BrokenTTS()
    else:
        edge.mode = {"stalls": "stall", "refuses": "refuse"}[failure]
        primary = edge_tts_service()
    tts = FallbackTTSService(primary=primary, fallback=_piper(models), first_audio_timeout_secs=1.0)
    down, _ = await asyncio.wait_for(_run(tts, "The museum opens in the morning.", 24000), 20)
    assert {"museum", "opens", "morning"} <= transcribe(models, _audio(down), 24000)
    assert tts.fallbacks == 1 and tts.spoken_by is tts.providers[1]


async def test_fallback_not_used_when_the_primary_works(models: SharedModels, edge: Any) -> None:
    tts = FallbackTTSService(
        primary=edge_tts_service(), fallback=_piper(models), first_audio_timeout_secs=5.0
    )
    down, _ = await _run(tts, "All is well.", 24000)
    assert _audio(down).size > 0 and tts.fallbacks == 0 and tts.spoken_by is tts.providers[0]


# --- Azure (Pipecat's service and the real Speech SDK) ------------------------------------


def _azure(settings: Settings, **azure: Any) -> TTSService:
    with_key = settings.model_copy(
        update={
            "secrets": Secrets.model_validate(
                {"AZURE_SPEECH_KEY": "0" * 32, "AZURE_SPEECH_REGION": "nowhere"}
            )
        }
    )
    return providers.get("tts", "azure").build(
        tweak(with_key, tts={"azure": AzureSettings(**azure)}), None
    )


def test_azure_ssml_carries_voice_language_and_prosody(settings: Settings) -> None:
    tts = _azure(settings, voice="en-GB-SoniaNeural", language="en-GB", rate="1.15", pitch="+5%")
    ssml = tts._construct_ssml("Fish & chips <now>")  # type: ignore[attr-defined]
    assert "xml:lang='en-GB'" in ssml and "name='en-GB-SoniaNeural'" in ssml
    assert "<prosody rate='1.15' pitch='+5%'>" in ssml
    assert "Fish &amp; chips &lt;now&gt;" in ssml


async def test_azure_sdk_failure_falls_back_within_the_turn(
    settings: Settings, models: SharedModels
) -> None:
    # No network here: the real SDK cancels the synthesis with a connection error.
    tts = FallbackTTSService(
        primary=_azure(settings), fallback=_piper(models), first_audio_timeout_secs=5.0
    )
    down, _ = await asyncio.wait_for(_run(tts, "Your table is ready.", 24000), 30)
    assert {"table", "ready"} <= transcribe(models, _audio(down), 24000)
    assert tts.fallbacks == 1


@pytest.mark.skipif(not os.environ.get("AZURE_SPEECH_KEY"), reason="AZURE_SPEECH_KEY not set")
async def test_azure_live(models: SharedModels) -> None:
    live = load_settings()
    down, _ = await _run(
        providers.get("tts", "azure").build(live, None), "Hello from Azure.", 24000
    )
    assert "azure" in transcribe(models, _audio(down), 24000)


# --- voicebot say -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["piper", "kokoro"])
def test_say_cli(provider: str, tmp_path: Path, models: SharedModels) -> None:
    out = tmp_path / "hello.wav"
    done = run_voicebot(
        "say",
        "Hello, the weather is fine today.",
        "--json",
        "--output",
        str(out),
        env={"VOICEBOT_TTS__PROVIDER": provider},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {
        "provider",
        "voice",
        "ttfb_ms",
        "audio_s",
        "elapsed_ms",
        "rtf",
        "sample_rate",
    }
    assert report["provider"] == provider and report["ttfb_ms"] > 0 and report["audio_s"] > 1
    audio, rate = sf.read(out, dtype="int16")
    assert rate == report["sample_rate"] and leading_silence_ms(audio, rate) < 25
    assert {"weather", "fine"} <= transcribe(models, audio, rate)


@pytest.mark.slow
def test_say_reports_which_provider_spoke(tmp_path: Path) -> None:
    # Edge is unreachable here (no network): the fallback speaks, and say says so.
    done = run_voicebot(
        "say",
        "Hi.",
        "--json",
        env={"VOICEBOT_TTS__PROVIDER": "edge", "VOICEBOT_TTS__FALLBACK": "piper"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["provider"] == "piper"


def test_a_provider_that_is_not_installed_is_a_start_up_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from voicebot.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "edge_tts" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install 'voicebot\[edge\]'"):
        providers.check(tweak(settings, tts={"provider": "edge"}), stages=("tts",))
