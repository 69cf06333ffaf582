"""Barge-in through /ws: speech, or noise, played over the bot's reply.

One case = ask a question, let the reply play for a while, then play an "intruder"
recording into the microphone while the bot speaks. For speech the bot should go quiet
within a few hundred milliseconds of the intruder's first voiced sample; for a cough, a
click or a noise burst it should keep talking. The client sees the bot's audio arrive at
playback pace, so "the bot stopped" is the last reply audio received before a gap.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from voicebot.bench.barge_in_vad import offline_vad_report
from voicebot.config import Settings
from voicebot.protocol import INPUT_SAMPLE_RATE, ReadyEvent, decode_event
from voicebot.tools.client import CHUNK_MS, first_voiced_sample

# Reply audio stopping for this long counts as the bot having gone quiet.
GAP_S = 0.25


@dataclass
class BargeInResult:
    """What one intrusion did to the bot's reply, as the client saw it."""

    intruder: str
    interrupted: bool
    # Intruder's first voiced sample sent -> last reply audio received before the gap.
    stop_latency_ms: float | None
    # Reply audio received after the intruder's onset, before the bot went quiet.
    audio_after_onset_s: float
    events: list[str] = field(default_factory=list)
    reply_text_after: str = ""

    def record(self) -> dict[str, Any]:
        return {
            "intruder": self.intruder,
            "interrupted": self.interrupted,
            "stop_latency_ms": None
            if self.stop_latency_ms is None
            else round(self.stop_latency_ms, 1),
            "audio_after_onset_s": round(self.audio_after_onset_s, 3),
            "reply_text_after": self.reply_text_after,
        }


class _Listener:
    def __init__(self) -> None:
        self.audio_times: list[tuple[float, int]] = []
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.reply_started = asyncio.Event()

    async def run(self, ws: Any) -> None:
        async for message in ws:
            now = time.perf_counter()
            if isinstance(message, bytes):
                self.audio_times.append((now, len(message)))
                self.reply_started.set()
                continue
            self.events.append((now, decode_event(message).model_dump(exclude_none=True)))


async def run_barge_in(
    url: str,
    question: np.ndarray,
    intruder: np.ndarray,
    intruder_name: str,
    *,
    play_before_s: float = 0.8,
    listen_after_s: float = 5.0,
    reply_timeout_s: float = 60.0,
) -> BargeInResult:
    """Ask `question`, then play `intruder` once `play_before_s` of the reply has arrived."""
    chunk = INPUT_SAMPLE_RATE * CHUNK_MS // 1000
    silence = np.zeros(chunk, dtype=np.int16)
    listener = _Listener()
    async with websockets.connect(url, max_size=None) as ws:
        ready = decode_event(await ws.recv())
        if not isinstance(ready, ReadyEvent):
            raise RuntimeError(f"expected a ready message first, got {ready}")
        bytes_per_s = ready.sample_rate * 2
        receive = asyncio.create_task(listener.run(ws))
        clock = _Pacer(ws)
        try:
            await clock.play(question)
            deadline = time.perf_counter() + reply_timeout_s
            # Keep the microphone open with silence until enough reply audio has arrived.
            while sum(n for _, n in listener.audio_times) < play_before_s * bytes_per_s:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"no reply within {reply_timeout_s:.0f} s")
                await clock.play(silence)
            onset_at = await clock.play(intruder, mark_at=first_voiced_sample(intruder))
            end = time.perf_counter() + listen_after_s
            while time.perf_counter() < end:
                await clock.play(silence)
        finally:
            receive.cancel()
    return _judge(listener, intruder_name, onset_at or time.perf_counter(), ready.sample_rate)


class _Pacer:
    """Sends 20 ms chunks at real-time pace, like a microphone."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._next = time.perf_counter()

    async def play(self, pcm: np.ndarray, mark_at: int | None = None) -> float | None:
        chunk = INPUT_SAMPLE_RATE * CHUNK_MS // 1000
        marked: float | None = None
        for offset in range(0, len(pcm), chunk):
            await self._ws.send(pcm[offset : offset + chunk].tobytes())
            if mark_at is not None and marked is None and offset + chunk > mark_at:
                marked = time.perf_counter()
            self._next = max(self._next + CHUNK_MS / 1000, time.perf_counter() - 0.1)
            await asyncio.sleep(max(0.0, self._next - time.perf_counter()))
        return marked


def _judge(listener: _Listener, name: str, onset: float, sample_rate: int) -> BargeInResult:
    """Find where the reply audio went quiet after the onset, if it did."""
    after = [at for at, _ in listener.audio_times if at >= onset]
    stop_at: float | None = None
    previous = onset
    for at in after:
        if at - previous >= GAP_S:
            stop_at = previous
            break
        previous = at
    started = [e for at, e in listener.events if at >= onset]
    kinds = [e["type"] for e in started]
    # The reply ended by itself if bot_stopped_speaking came with no user turn before it.
    user_turn = "user_started_speaking" in kinds
    interrupted = user_turn and (
        "bot_stopped_speaking" not in kinds
        or kinds.index("user_started_speaking") < kinds.index("bot_stopped_speaking")
    )
    if stop_at is None and after:
        stop_at = after[-1]
    latency = None if not interrupted or stop_at is None else (stop_at - onset) * 1000
    audio_after = sum(n for at, n in listener.audio_times if onset <= at <= (stop_at or onset)) / 2
    text_after = " ".join(
        e["text"] for at, e in listener.events if at >= onset and e["type"] == "bot_text"
    )
    return BargeInResult(
        intruder=name,
        interrupted=interrupted,
        stop_latency_ms=latency,
        audio_after_onset_s=audio_after / sample_rate,
        events=kinds,
        reply_text_after=text_after,
    )


# Words said over the bot's reply, by voices the project was never tuned on.
SPEECH_INTRUDERS: tuple[tuple[str, str, str, int], ...] = (
    ("speech-espeak-us", "Wait, what about tomorrow?", "en-us", 165),
    ("speech-espeak-scottish", "Stop, tell me about trains instead.", "en-gb-scotland", 170),
    ("speech-espeak-female", "Hold on, I have another question.", "en-gb-x-rp+f3", 160),
    ("speech-piper", "Sorry, can you say that again?", "piper", 0),
)


def noise_intruders(seed: int = 7) -> dict[str, np.ndarray]:
    """Sounds that are not words, 16 kHz int16: none of them should stop the bot.

    Silero scores every one of them below 0.3 (words score above 0.9).
    """
    rng = np.random.default_rng(seed)
    rate = INPUT_SAMPLE_RATE

    def silence(secs: float) -> np.ndarray:
        return np.zeros(int(secs * rate), np.float32)

    def burst(secs: float, decay: float) -> np.ndarray:
        t = np.arange(int(secs * rate)) / rate
        noise = rng.standard_normal(t.size).astype(np.float32)
        return (noise * np.exp(-t / decay)).astype(np.float32)

    def lowpass(x: np.ndarray, width: int) -> np.ndarray:
        return np.convolve(x, np.ones(width, np.float32) / width, mode="same")

    def cough() -> np.ndarray:
        one = lowpass(burst(0.25, 0.07), 6)
        return np.concatenate([one, silence(0.12), 0.7 * lowpass(burst(0.2, 0.05), 6)])

    def clicks(count: int, spacing: float) -> np.ndarray:
        out = silence(count * spacing)
        for i in range(count):
            start = int(i * spacing * rate)
            out[start : start + 32] = burst(0.002, 0.0005)
        return out

    def typing() -> np.ndarray:
        parts = []
        for _ in range(14):
            parts += [lowpass(burst(0.012, 0.003), 3), silence(float(rng.uniform(0.07, 0.2)))]
        return np.concatenate(parts)

    def thump() -> np.ndarray:
        t = np.arange(int(0.35 * rate)) / rate
        return (np.sin(2 * np.pi * 70 * t) * np.exp(-t / 0.08)).astype(np.float32)

    def hum() -> np.ndarray:
        t = np.arange(int(1.5 * rate)) / rate
        harmonics: np.ndarray = np.sum([np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8)], 0)
        return harmonics.astype(np.float32)

    def music() -> np.ndarray:
        t = np.arange(int(1.5 * rate)) / rate
        tremolo = 1 + 0.3 * np.sin(2 * np.pi * 5 * t)
        chord: np.ndarray = np.sum([np.sin(2 * np.pi * hz * t) for hz in (262, 330, 392, 523)], 0)
        out: np.ndarray = (chord * tremolo).astype(np.float32)
        return out

    def scaled(x: np.ndarray, peak_dbfs: float) -> np.ndarray:
        peak = float(np.max(np.abs(x))) or 1.0
        y = x / peak * 10 ** (peak_dbfs / 20)
        padded = np.concatenate([silence(0.05), y, silence(0.05)])
        pcm: np.ndarray = (np.clip(padded, -1, 1) * 32767).astype(np.int16)
        return pcm

    return {
        "noise-white-burst": scaled(rng.standard_normal(int(0.6 * rate)), -8),
        "noise-cough": scaled(cough(), -3),
        "noise-clicks": scaled(clicks(6, 0.12), -3),
        "noise-typing": scaled(typing(), -6),
        "noise-thump": scaled(thump(), -3),
        "noise-hum": scaled(hum(), -10),
        "noise-music": scaled(music(), -6),
    }


# A voice across the room: words, but far quieter than the person at the microphone.
DISTANT_VOICE = (
    "noise-distant-voice",
    "The weather will be sunny and warm tomorrow.",
    "en-gb",
    160,
)
DISTANT_VOICE_PEAK_DBFS = -40.0


def distant_voice(folder: Path) -> dict[str, np.ndarray]:
    """Background talk (needs Debian's espeak-ng): it should not stop the bot either."""
    from voicebot.tools import voice_set
    from voicebot.tools.client import load_pcm16k

    name, text, voice, speed = DISTANT_VOICE
    path = folder / f"{name}.wav"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        voice_set.speak(text, voice, speed, path)
    pcm = load_pcm16k(path).astype(np.float32)
    peak = float(np.max(np.abs(pcm))) or 1.0
    quiet: np.ndarray = (pcm / peak * 32767 * 10 ** (DISTANT_VOICE_PEAK_DBFS / 20)).astype(np.int16)
    return {name: quiet}


def speech_intruders(folder: Path, voices: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The spoken intruders as 16 kHz int16 (espeak-ng ones need Debian's espeak-ng).

    `voices` picks some by voice ("piper", "en-us", ...); all of them by default.
    """
    from voicebot.tools import voice_set
    from voicebot.tools.client import load_pcm16k

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, text, voice, speed in SPEECH_INTRUDERS:
        if voices and voice not in voices:
            continue
        path = folder / f"{name}.wav"
        if not path.exists():
            voice_set.speak(text, voice, speed, path)
        out[name] = load_pcm16k(path)
    return out


STORY_REQUEST = "Tell me a long story about a dragon and a brave knight."


async def run_barge_in_bench(
    settings: Settings, repeat: int, output: Path, url: str | None = None
) -> dict[str, Any]:
    """Every intruder over a long reply, `repeat` times; writes and returns the report."""
    from voicebot.bench.report import percentile, report_header, write_report
    from voicebot.tools.local_server import LocalServer

    folder = Path(tempfile.mkdtemp(prefix="voicebot-barge-in-"))

    def prepare() -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from voicebot.tools import voice_set
        from voicebot.tools.client import load_pcm16k

        voice_set.speak(STORY_REQUEST, "piper", 0, folder / "request.wav")
        return load_pcm16k(folder / "request.wav"), {
            **speech_intruders(folder),
            **noise_intruders(),
            **distant_voice(folder),
        }

    request, intruders = await asyncio.to_thread(prepare)
    offline = await offline_vad_report(settings, intruders)
    for label, part in offline.items():
        summary = {k: v for k, v in part.items() if k != "delays_ms"}
        print(json.dumps({"vad_offline": label, **summary}), flush=True)
    cases: list[dict[str, Any]] = []

    async def measure(ws_url: str) -> None:
        for _ in range(repeat):
            for name, pcm in intruders.items():
                try:
                    result = await run_barge_in(ws_url, request, pcm, name)
                except TimeoutError as e:
                    cases.append({"intruder": name, "error": str(e)})
                    continue
                cases.append({**result.record(), "events": result.events})
                print(json.dumps(cases[-1]), flush=True)

    if url:
        await measure(url)
    else:
        async with LocalServer(settings) as server:
            await measure(server.ws_url)
    speech = [c for c in cases if c["intruder"].startswith("speech") and "error" not in c]
    noise = [c for c in cases if c["intruder"].startswith("noise") and "error" not in c]
    stops = [c["stop_latency_ms"] for c in speech if c["stop_latency_ms"] is not None]
    report = {
        **report_header("barge-in"),
        "vad": settings.vad.model_dump(),
        "summary": {
            "speech_cases": len(speech),
            "speech_interrupted": sum(c["interrupted"] for c in speech),
            "stop_latency_ms": {
                "median": statistics.median(stops) if stops else None,
                "p90": percentile(stops, 0.9),
                "max": max(stops, default=None),
            },
            "noise_cases": len(noise),
            "noise_interrupted": sum(c["interrupted"] for c in noise),
            "errors": sum("error" in c for c in cases),
        },
        "cases": cases,
        # The VAD's decision alone, with no server and whatever the machine's load.
        "vad_offline": offline,
    }
    await asyncio.to_thread(write_report, output, report)
    return report
