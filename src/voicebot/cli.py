"""The `voicebot` command line: each subcommand names the function that runs it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voicebot.autotune import Tuned
from voicebot.config import Settings, load_settings
from voicebot.errors import ConfigError, InputError, VoicebotError
from voicebot.observability.logging import setup_logging


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML profile (default: $VOICEBOT_CONFIG)")
    parser.add_argument(
        "--assume-gpu",
        metavar="NAME",
        help="tune for this GPU instead of detecting one (T4, L4, A10G, RTX 4090, "
        "A100-40GB, A100-80GB, H100, H200, ... or none)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the voice assistant server")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 7860)")
    _add_config_flag(serve)
    serve.set_defaults(run=_serve_command)

    talk = commands.add_parser("talk", help="one spoken turn from a WAV file through the pipeline")
    talk.add_argument("input", type=Path, help="the question, any sample rate or channel count")
    talk.add_argument("--output", type=Path, help="write the bot's reply audio here (WAV)")
    talk.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flag(talk)
    talk.set_defaults(run=lambda args: asyncio.run(_talk(args, _settings(args))))

    transcribe = commands.add_parser("transcribe", help="speech to text for one audio file")
    transcribe.add_argument("input", type=Path, help="any sample rate or channel count")
    transcribe.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flag(transcribe)
    transcribe.set_defaults(run=lambda args: _transcribe(args, _settings(args)))

    chat = commands.add_parser("chat", help="one text turn through the configured LLM stage")
    chat.add_argument("text", help="what to ask")
    chat.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flag(chat)
    chat.set_defaults(run=lambda args: asyncio.run(_chat(args, _settings(args))))

    say = commands.add_parser("say", help="text to speech with the configured TTS")
    say.add_argument("text", help="what to say")
    say.add_argument("--output", type=Path, help="write the audio here (WAV)")
    say.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flag(say)
    say.set_defaults(run=lambda args: asyncio.run(_say(args, _settings(args))))

    daily = commands.add_parser("daily", help="the bot joins an existing Daily room and talks")
    daily.add_argument("--room", required=True, help="the room URL (https://NAME.daily.co/ROOM)")
    daily.add_argument(
        "--token", help="a meeting token for the bot (default: an owner token via DAILY_API_KEY)"
    )
    _add_config_flag(daily)
    daily.set_defaults(run=_daily)

    gpu_info = commands.add_parser("gpu-info", help="the GPUs found and whether CUDA works")
    gpu_info.add_argument("--json", action="store_true", help="print one JSON object")
    gpu_info.set_defaults(run=_gpu_info)

    doctor = commands.add_parser(
        "doctor", help="check this machine and the configuration; say what to fix"
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flag(doctor)
    doctor.set_defaults(run=_doctor)

    config = commands.add_parser("config", help="inspect the configuration")
    config_kinds = config.add_subparsers(dest="config_command", required=True)
    show = config_kinds.add_parser(
        "show", help="the effective configuration and where each value came from"
    )
    show.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flag(show)
    show.set_defaults(run=_config_show)

    bench = commands.add_parser("bench", help="benchmarks that write JSON results")
    bench_kinds = bench.add_subparsers(dest="bench", required=True)
    turn = bench_kinds.add_parser("turn", help="turn latency over spoken questions through /ws")
    turn.add_argument("--turns", type=int, default=10, help="turns to measure (default 10)")
    turn.add_argument("--output", type=Path, default=Path("bench-results/turn.json"))
    turn.add_argument("--url", help="measure a running server instead of starting one")
    turn.add_argument(
        "--voices",
        choices=("samples", "unseen"),
        default="samples",
        help="the bundled Piper samples, or espeak-ng/Piper voices never tuned on",
    )
    turn.add_argument(
        "--half",
        choices=("heldout", "tune", "all"),
        default="heldout",
        help="with --voices unseen: which half of the set (default: held-out)",
    )
    _add_config_flag(turn)
    turn.set_defaults(run=_bench_turn)

    loop = bench_kinds.add_parser(
        "loop", help="voicebot beside a hand-written loop and a stock Pipecat bot, same client"
    )
    loop.add_argument(
        "--systems",
        default="voicebot,loop,stock",
        help="comma-separated, measured in this order: voicebot, loop, stock (default: all)",
    )
    loop.add_argument("--voices", choices=("samples", "unseen"), default="unseen")
    loop.add_argument("--half", choices=("heldout", "tune", "all"), default="heldout")
    loop.add_argument("--turns", type=int, help="use only the first N utterances")
    loop.add_argument("--warmup", type=int, default=1, help="unmeasured turns first (default 1)")
    loop.add_argument("--turn-timeout", type=float, default=60.0, help="seconds (default 60)")
    loop.add_argument("--start-timeout", type=float, default=300.0, help="seconds (default 300)")
    loop.add_argument("--output", type=Path, default=Path("bench-results/loop.json"))
    _add_config_flag(loop)
    loop.set_defaults(run=_bench_loop)
    return parser


def _tuned(args: argparse.Namespace, server: dict[str, Any] | None = None) -> Tuned:
    """Settings from every source, with `auto` values resolved for this machine."""
    from voicebot.autotune import resolve

    overrides = {"server": server} if server else None
    settings = load_settings(args.config, overrides)
    try:
        return resolve(settings, assume_gpu=args.assume_gpu)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def _settings(args: argparse.Namespace, server: dict[str, Any] | None = None) -> Settings:
    return _tuned(args, server).settings


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as e:
        print(f"voicebot: configuration error: {e}", file=sys.stderr)
        return 2
    except InputError as e:
        print(f"voicebot: {e}", file=sys.stderr)
        return 2
    except VoicebotError as e:
        print(f"voicebot: {e}", file=sys.stderr)
        return 1


def _serve_command(args: argparse.Namespace) -> int:
    flags = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    return _serve(_tuned(args, flags))


def _daily(args: argparse.Namespace) -> int:
    from voicebot.tools.daily_bot import join_room

    settings = _settings(args)
    setup_logging(settings.server.log_level)
    reason = asyncio.run(join_room(settings, args.room, args.token))
    print(f"session ended: {reason or 'pipeline finished'}")
    return 0


def _bench_turn(args: argparse.Namespace) -> int:
    from voicebot.tools.bench import run_turn_bench

    setup_logging("WARNING")
    return asyncio.run(
        run_turn_bench(
            _settings(args),
            args.turns,
            args.output,
            args.url,
            voices=args.voices,
            half=args.half,
        )
    )


def _bench_loop(args: argparse.Namespace) -> int:
    from voicebot.tools.bench_loop import Options, run_loop_bench

    setup_logging("WARNING")
    return asyncio.run(
        run_loop_bench(
            _settings(args),
            args.output,
            systems=[s.strip() for s in args.systems.split(",") if s.strip()],
            voices=args.voices,
            half=args.half,
            turns=args.turns,
            options=Options(
                turn_timeout_s=args.turn_timeout,
                start_timeout_s=args.start_timeout,
                warmup_turns=max(0, args.warmup),
            ),
            config_file=args.config,
        )
    )


def _doctor(args: argparse.Namespace) -> int:
    from voicebot.tools.doctor import print_report, report, run_checks

    setup_logging("WARNING")
    checks = run_checks(_settings(args))
    summary = report(checks)
    if args.json:
        print(json.dumps(summary))
    else:
        print_report(checks)
    return 0 if summary["ok"] else 1


def _transcribe(args: argparse.Namespace, settings: Settings) -> int:
    from voicebot.models import SharedModels
    from voicebot.tools.client import load_pcm16k

    setup_logging("WARNING")
    pcm = load_pcm16k(args.input)
    engine = SharedModels.load(settings, stages=("stt",)).stt
    engine.warm()
    result = engine.submit(pcm.astype("float32") / 32768.0).result()
    summary = {
        "text": result.text,
        "language": result.language,
        "duration_s": result.duration_s,
        "elapsed_ms": result.elapsed_ms,
        "rtf": result.rtf,
        "model": result.model,
        "device": result.device,
        "compute_type": result.compute_type,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(result.text)
        print(
            f"[{result.duration_s:.2f} s of audio in {result.elapsed_ms:.0f} ms, "
            f"RTF {result.rtf:.3f}, {result.model} on {result.device}/{result.compute_type}]",
            file=sys.stderr,
        )
    return 0


async def _chat(args: argparse.Namespace, settings: Settings) -> int:
    from voicebot.models import SharedModels
    from voicebot.tools.chat import chat

    setup_logging("WARNING")
    if not args.text.strip():
        raise InputError("nothing to ask: give a non-empty TEXT")
    result = await chat(settings, SharedModels.load(settings, stages=("llm",)), args.text)
    if not result.reply:
        print("voicebot: the LLM produced no reply (see the log above)", file=sys.stderr)
        return 1
    summary = result.summary()
    print(json.dumps(summary) if args.json else result.reply)
    if not args.json:
        print(
            f"[{summary['provider']}: first token {summary['ttft_ms']} ms, "
            f"{summary['tokens']} pieces in {summary['elapsed_ms']} ms]",
            file=sys.stderr,
        )
    return 0


async def _say(args: argparse.Namespace, settings: Settings) -> int:
    import soundfile as sf

    from voicebot.models import SharedModels
    from voicebot.tools.speak import speak

    setup_logging("WARNING")
    if not args.text.strip():
        raise InputError("nothing to say: give a non-empty TEXT")
    result = await speak(settings, SharedModels.load(settings, stages=("tts",)), args.text)
    if not result.audio:
        print("voicebot: the TTS produced no audio (see the log above)", file=sys.stderr)
        return 1
    if args.output:
        sf.write(str(args.output), memoryview(result.audio).cast("h"), result.sample_rate)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['audio_s']} s of audio from {summary['provider']} ({summary['voice']}), "
            f"first audio after {summary['ttfb_ms']} ms, RTF {summary['rtf']}"
        )
    return 0


def _gpu_info(args: argparse.Namespace) -> int:
    from voicebot.gpu import detect

    report = detect()
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    if not report.gpus:
        print(f"no NVIDIA GPU: {report.cuda.reason}")
        return 0
    print(f"driver {report.driver_version}, CUDA {report.cuda_version}")
    for gpu in report.gpus:
        caps = ", ".join(name for name, ok in gpu.capabilities.items() if ok)
        cc = ".".join(map(str, gpu.compute_capability))
        print(
            f"GPU {gpu.index}: {gpu.name}, {gpu.total_mib} MiB ({gpu.free_mib} MiB free), "
            f"compute {cc}: {caps}"
        )
    print(f"CUDA {'usable' if report.cuda.usable else 'NOT usable'}: {report.cuda.reason}")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    from voicebot.config import value_sources

    tuned = _tuned(args)
    values = tuned.settings.redacted()
    sources = value_sources(load_settings(args.config), args.config)
    for key, reason in tuned.decisions.items():
        sources[key] = f"auto: {reason}"
    if args.json:
        print(json.dumps({"config": values, "sources": sources, "gpu": tuned.report.to_json()}))
        return 0
    for key, source in sources.items():
        value: Any = values
        for part in key.split("."):
            value = value[part]
        print(f"{key} = {value!r}    [{source}]")
    return 0


def _serve(tuned: Tuned) -> int:
    import uvicorn
    from loguru import logger

    from voicebot.providers import spec as providers
    from voicebot.server import create_app
    from voicebot.server.ws_protocol import VoicebotWebSocketProtocol

    settings = tuned.settings
    setup_logging(settings.server.log_level)
    for key, reason in tuned.decisions.items():
        logger.bind(setting=key, reason=reason).info("auto-tuned")
    providers.check(settings)
    uvicorn.run(
        create_app(settings, decisions=tuned.decisions),
        host=settings.server.host,
        port=settings.server.port,
        ws=VoicebotWebSocketProtocol,
        ws_max_size=4 * settings.server.max_message_bytes,
        log_level=settings.server.log_level.lower()
        if settings.server.log_level != "TRACE"
        else "trace",
    )
    return 0


async def _talk(args: argparse.Namespace, settings: Settings) -> int:
    import soundfile as sf

    from voicebot.tools.client import load_pcm16k, run_turn
    from voicebot.tools.local_server import LocalServer

    setup_logging("WARNING")
    pcm = load_pcm16k(args.input)
    async with LocalServer(settings) as server:
        result = await run_turn(server.ws_url, pcm)
    if args.output:
        audio = memoryview(result.reply_audio).cast("h")
        sf.write(str(args.output), audio, result.sample_rate, subtype="PCM_16")
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"you said:      {summary['transcript']}")
        print(f"bot replied:   {summary['reply']}")
        print(f"turn latency:  {summary['turn_latency_ms']} ms")
        print(f"stages (ms):   {summary['stages']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
