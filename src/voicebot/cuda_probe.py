"""Subprocess entry point: can CTranslate2 run a real Whisper encode on CUDA here?

Run as `python -m voicebot.cuda_probe`; prints one JSON line. It may be killed outright
(a missing cuDNN calls abort()), which is why it never runs inside the server.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    try:
        import ctranslate2
    except ImportError as e:
        return _report(False, f"ctranslate2 is not installed ({e})")
    count = ctranslate2.get_cuda_device_count()
    if count == 0:
        return _report(False, "CTranslate2 sees no CUDA device (driver or CUDA runtime missing)")
    try:
        import numpy as np
        from faster_whisper import WhisperModel

        from voicebot.config import Settings
        from voicebot.model_files import whisper_model_dir

        # Loading cuDNN/cuBLAS happens on the first real encode, not at import.
        model = WhisperModel(
            str(whisper_model_dir(Settings(stt={"whisper": {"model": "tiny.en"}}))),
            device="cuda",
            compute_type="float16",
        )
        segments, _ = model.transcribe(np.zeros(16000, dtype=np.float32), language="en")
        list(segments)
    except Exception as e:  # every failure here is a reason to stay on the CPU
        return _report(False, f"CUDA encode failed: {type(e).__name__}: {e}", count)
    return _report(True, f"CUDA works: {count} device(s), float16 Whisper encode succeeded", count)


def _report(usable: bool, reason: str, count: int = 0) -> int:
    print(json.dumps({"usable": usable, "reason": reason, "device_count": count}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
