"""The barge-in VAD decision alone, offline: how long after each intruder's onset the VAD
reports speech, with the real model and no server, so the figure does not depend on how
busy the machine is. Each intruder is tried at 32 offsets within Silero's 32 ms windows
(16 samples apart): Silero's scores, and so the delay, depend on where a sound starts in
its window, and that can be anywhere: a client's chunks need not all be 20 ms (the last
chunk of a file, a browser's 10 ms frames), and the hum's onset fooled Silero only when it
started 222-233 samples into a window.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState

from voicebot.config import Settings
from voicebot.protocol import INPUT_SAMPLE_RATE
from voicebot.tools.client import CHUNK_MS, first_voiced_sample

WINDOW_OFFSETS = range(0, 512, 16)


async def vad_start_delay(analyzer: VADAnalyzer, pcm: np.ndarray, lead: int = 0) -> float | None:
    """Seconds from `pcm`'s first voiced sample to the VAD reporting SPEAKING (None: never).

    `pcm` follows 1 s and `lead` samples of silence, fed in 20 ms chunks as clients send it.
    """
    chunk = INPUT_SAMPLE_RATE * CHUNK_MS // 1000
    analyzer.set_sample_rate(INPUT_SAMPLE_RATE)
    audio = np.concatenate([np.zeros(INPUT_SAMPLE_RATE + lead, dtype=np.int16), pcm])
    onset = INPUT_SAMPLE_RATE + lead + first_voiced_sample(pcm)
    for offset in range(0, audio.size, chunk):
        state = await analyzer.analyze_audio(audio[offset : offset + chunk].tobytes())
        if state == VADState.SPEAKING and offset + chunk > onset:
            return (offset + chunk - onset) / INPUT_SAMPLE_RATE
    return None


def _analyzer(settings: Settings, params: VADParams) -> VADAnalyzer:
    if settings.vad.provider == "energy":
        from voicebot.audio.energy_vad import EnergyVADAnalyzer

        return EnergyVADAnalyzer(params=params)
    from voicebot.audio.sessions import load_silero_session
    from voicebot.audio.silero import SharedSileroVADAnalyzer

    return SharedSileroVADAnalyzer(session=load_silero_session(), params=params)


async def offline_vad_report(
    settings: Settings, intruders: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Per VAD params (normal, and barge-in when enabled): each intruder's delays in ms,
    and for words the median, p90 and max; for noise how many starts it caused."""
    from voicebot.bench.report import percentile
    from voicebot.pipeline import vad_params

    normal, barge_in = vad_params(settings)
    report: dict[str, Any] = {}
    for label, params in (("normal", normal), ("barge_in", barge_in)):
        if params is None:
            continue
        delays: dict[str, list[float | None]] = {}
        for name, pcm in intruders.items():
            delays[name] = []
            for lead in WINDOW_OFFSETS:
                delay = await vad_start_delay(_analyzer(settings, params), pcm, lead)
                delays[name].append(None if delay is None else round(delay * 1000, 1))
        words = [d for n, ds in delays.items() if n.startswith("speech") for d in ds]
        heard = [d for d in words if d is not None]
        report[label] = {
            "speech_tries": len(words),
            "speech_started": len(heard),
            "start_delay_ms": {
                "median": statistics.median(heard) if heard else None,
                "p90": percentile(heard, 0.9),
                "max": max(heard, default=None),
            },
            "noise_tries": sum(len(ds) for n, ds in delays.items() if n.startswith("noise")),
            "noise_started": sum(
                d is not None for n, ds in delays.items() if n.startswith("noise") for d in ds
            ),
            "delays_ms": delays,
        }
    return report
