"""A client of the voicebot WebSocket protocol that plays a recording like a microphone.

Used by `voicebot talk`, the turn benchmark and the tests, so all three measure a turn
the same way: turn latency runs from sending the chunk holding the last voiced sample
of the input to receiving the first bot audio after it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import websockets

from voicebot.audio.pcm import voiced_samples
from voicebot.errors import InputError
from voicebot.protocol import INPUT_SAMPLE_RATE, ReadyEvent, decode_event

CHUNK_MS = 20


@dataclass
class TurnResult:
    """What one spoken turn produced, as seen by the client."""

    transcript: str
    reply: str
    reply_audio: bytes
    sample_rate: int
    turn_latency_ms: float | None
    stages: dict[str, float]
    events: list[dict[str, Any]] = field(default_factory=list)
    # (arrival time, bytes) of each reply audio message, for playback-gap analysis.
    audio_arrivals: list[tuple[float, int]] = field(default_factory=list)
    # When each event arrived, ms after the last voiced sample was sent (negative before it).
    event_ms: list[float] = field(default_factory=list)
    # Bot audio arrived before the last voiced sample was sent: the bot answered into a
    # pause (a cut-off), and turn_latency_ms then times the rest of that early reply.
    spoke_before_end: bool = False
    # The server's timeline of the turn answered after the last voiced sample (ms after
    # the last voiced audio it received; see voicebot.observability.turn_timeline).
    server_timeline_ms: dict[str, float] = field(default_factory=dict)

    @property
    def reply_audio_s(self) -> float:
        return len(self.reply_audio) / 2 / self.sample_rate if self.sample_rate else 0.0

    def summary(self) -> dict[str, Any]:
        """The JSON object `voicebot talk --json` prints."""
        return {
            "transcript": self.transcript,
            "reply": self.reply,
            "reply_audio_s": round(self.reply_audio_s, 3),
            "turn_latency_ms": None
            if self.turn_latency_ms is None
            else round(self.turn_latency_ms, 1),
            "stages": self.stages,
            "sample_rate": self.sample_rate,
        }


def load_pcm16k(path: Path) -> np.ndarray:
    """Read any audio file soundfile understands as mono int16 at 16 kHz."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise InputError(f"{path} is not a readable audio file: {e}") from e
    mono = audio.mean(axis=1)
    if rate != INPUT_SAMPLE_RATE:
        mono = soxr.resample(mono, rate, INPUT_SAMPLE_RATE)
    pcm: np.ndarray = (np.clip(mono, -1.0, 1.0) * 32767).astype(np.int16)
    return pcm


def first_voiced_sample(pcm: np.ndarray) -> int:
    """Index of the first sample louder than VOICED_THRESHOLD_DBFS (0 if all silent)."""
    loud = voiced_samples(pcm)
    return int(loud[0]) if loud.size else 0


def last_voiced_sample(pcm: np.ndarray) -> int:
    """Index of the last sample louder than VOICED_THRESHOLD_DBFS (0 if all silent)."""
    loud = voiced_samples(pcm)
    return int(loud[-1]) if loud.size else 0


class _Receiver:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.event_times: list[float] = []
        self.audio = bytearray()
        self.arrivals: list[tuple[float, int]] = []
        self.first_audio_after: float | None = None
        self.mark: float | None = None
        self.last_audio_at = 0.0
        self.spoke_before_end = False
        self.bot_stopped = asyncio.Event()

    async def run(self, ws: Any) -> None:
        async for message in ws:
            now = time.perf_counter()
            if isinstance(message, bytes):
                if self.mark is not None:
                    self.audio.extend(message)
                    self.arrivals.append((now, len(message)))
                    if self.first_audio_after is None:
                        self.first_audio_after = now
                else:
                    self.spoke_before_end = True
                self.last_audio_at = now
                continue
            # Every event must match the documented protocol (a client error otherwise).
            event = decode_event(message).model_dump(exclude_none=True)
            self.events.append(event)
            self.event_times.append(now)
            if event.get("type") == "bot_stopped_speaking" and self.mark is not None:
                self.bot_stopped.set()


async def run_turn(
    url: str,
    pcm: np.ndarray,
    *,
    realtime: bool = True,
    reply_timeout_s: float = 60.0,
    settle_s: float = 1.0,
) -> TurnResult:
    """Speak `pcm` (int16, 16 kHz mono) to the server at `url` and collect the bot's reply."""
    chunk = INPUT_SAMPLE_RATE * CHUNK_MS // 1000
    voiced_end = last_voiced_sample(pcm)
    receiver = _Receiver()
    async with websockets.connect(url, max_size=None) as ws:
        ready = decode_event(await ws.recv())
        if not isinstance(ready, ReadyEvent):
            raise RuntimeError(f"expected a ready message first, got {ready}")
        sample_rate = ready.sample_rate
        receive_task = asyncio.create_task(receiver.run(ws))
        try:
            await _send_paced(ws, pcm, chunk, voiced_end, receiver, realtime)
            await _send_silence_until_done(ws, chunk, receiver, reply_timeout_s, settle_s)
        finally:
            receive_task.cancel()
    return _result(receiver, sample_rate)


async def _send_paced(
    ws: Any, pcm: np.ndarray, chunk: int, voiced_end: int, receiver: _Receiver, realtime: bool
) -> None:
    start = time.perf_counter()
    for i, offset in enumerate(range(0, len(pcm), chunk)):
        await ws.send(pcm[offset : offset + chunk].tobytes())
        if receiver.mark is None and offset + chunk > voiced_end:
            receiver.mark = time.perf_counter()
        if realtime:
            await asyncio.sleep(max(0.0, start + (i + 1) * CHUNK_MS / 1000 - time.perf_counter()))
    if receiver.mark is None:
        receiver.mark = time.perf_counter()


async def _send_silence_until_done(
    ws: Any, chunk: int, receiver: _Receiver, timeout_s: float, settle_s: float
) -> None:
    """Keep the microphone open with silence until the bot has finished its reply."""
    silence = bytes(chunk * 2)
    deadline = time.perf_counter() + timeout_s
    next_send = time.perf_counter()
    while time.perf_counter() < deadline:
        if (
            receiver.bot_stopped.is_set()
            and time.perf_counter() - receiver.last_audio_at > settle_s
        ):
            return
        await ws.send(silence)
        next_send += CHUNK_MS / 1000
        await asyncio.sleep(max(0.0, next_send - time.perf_counter()))
    raise TimeoutError(f"the bot did not finish a reply within {timeout_s:.0f} s")


def _result(receiver: _Receiver, sample_rate: int) -> TurnResult:
    transcript = " ".join(
        e["text"] for e in receiver.events if e.get("type") == "transcript" and e.get("final")
    ).strip()
    reply = " ".join(e["text"] for e in receiver.events if e.get("type") == "bot_text").strip()
    stages: dict[str, float] = {}
    for event in receiver.events:
        if event.get("type") != "metrics":
            continue
        stage = event["stage"]
        if stage == "stt" and "processing_ms" in event:
            stages.setdefault("stt_ms", event["processing_ms"])
        elif stage == "llm" and "ttfb_ms" in event:
            stages.setdefault("llm_ttft_ms", event["ttfb_ms"])
        elif stage == "llm" and "queue_ms" in event:
            stages.setdefault("llm_queue_ms", event["queue_ms"])
        elif stage == "llm" and "tokens_per_s" in event:
            stages.setdefault("llm_tokens_per_s", event["tokens_per_s"])
        elif stage == "tts" and "ttfb_ms" in event:
            stages.setdefault("tts_ttfb_ms", event["ttfb_ms"])
    server_timeline: dict[str, float] = {}
    for event, at in zip(receiver.events, receiver.event_times, strict=True):
        # A timeline sent before the last voiced sample is an earlier pause's reply.
        if event.get("stage") == "turn" and receiver.mark is not None and at >= receiver.mark:
            server_timeline = event.get("timeline_ms", {})
            break
    latency = None
    if receiver.first_audio_after is not None and receiver.mark is not None:
        latency = (receiver.first_audio_after - receiver.mark) * 1000
    return TurnResult(
        transcript=transcript,
        reply=reply,
        reply_audio=bytes(receiver.audio),
        sample_rate=sample_rate,
        turn_latency_ms=latency,
        stages=stages,
        events=receiver.events,
        audio_arrivals=receiver.arrivals,
        event_ms=[round((t - (receiver.mark or t)) * 1000, 1) for t in receiver.event_times],
        spoke_before_end=receiver.spoke_before_end,
        server_timeline_ms=server_timeline,
    )


def playback_gaps(
    arrivals: list[tuple[float, int]], sample_rate: int, jitter_s: float = 0.1
) -> tuple[float, float]:
    """Seconds a player with a `jitter_s` buffer would have run dry while the reply played
    (in all, and the longest gap): audio that arrived late, as a listener hears it."""
    if not arrivals or not sample_rate:
        return 0.0, 0.0
    total = longest = 0.0
    plays_until: float | None = None
    for at, size in arrivals:
        secs = size / 2 / sample_rate
        if plays_until is None:
            plays_until = at + jitter_s + secs
        elif at > plays_until:
            gap = at - plays_until
            total, longest = total + gap, max(longest, gap)
            plays_until = at + secs
        else:
            plays_until += secs
    return total, longest
