"""The `voicebot` command line: serve, talk, bench."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voicebot.config import Settings, load_settings
from voicebot.errors import ConfigError, VoicebotError
from voicebot.observability.logging import setup_logging


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML profile (default: $VOICEBOT_CONFIG)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the voice assistant server")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 7860)")
    _add_config_flag(serve)

    talk = commands.add_parser("talk", help="one spoken turn from a WAV file through the pipeline")
    talk.add_argument("input", type=Path, help="the question, any sample rate or channel count")
    talk.add_argument("--output", type=Path, help="write the bot's reply audio here (WAV)")
    talk.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flag(talk)

    bench = commands.add_parser("bench", help="benchmarks that write JSON results")
    bench_kinds = bench.add_subparsers(dest="bench", required=True)
    turn = bench_kinds.add_parser("turn", help="turn latency over spoken questions through /ws")
    turn.add_argument("--turns", type=int, default=10, help="turns to measure (default 10)")
    turn.add_argument("--output", type=Path, default=Path("bench-results/turn.json"))
    turn.add_argument("--url", help="measure a running server instead of starting one")
    _add_config_flag(turn)
    return parser


def _settings(args: argparse.Namespace, server: dict[str, Any] | None = None) -> Settings:
    overrides = {"server": server} if server else None
    return load_settings(args.config, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            flags = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
            return _serve(_settings(args, flags))
        if args.command == "talk":
            return asyncio.run(_talk(args, _settings(args)))
        if args.command == "bench":
            from voicebot.bench import run_turn_bench

            setup_logging("WARNING")
            return asyncio.run(run_turn_bench(_settings(args), args.turns, args.output, args.url))
    except ConfigError as e:
        print(f"voicebot: configuration error: {e}", file=sys.stderr)
        return 2
    except VoicebotError as e:
        print(f"voicebot: {e}", file=sys.stderr)
        return 1
    return 0


def _serve(settings: Settings) -> int:
    import uvicorn

    from voicebot.models import check_models
    from voicebot.server import create_app

    setup_logging(settings.server.log_level)
    check_models(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        ws_max_size=4 * settings.server.max_message_bytes,
        log_level=settings.server.log_level.lower()
        if settings.server.log_level != "TRACE"
        else "trace",
    )
    return 0


async def _talk(args: argparse.Namespace, settings: Settings) -> int:
    import soundfile as sf

    from voicebot.client import load_pcm16k, run_turn
    from voicebot.local_server import LocalServer

    setup_logging("WARNING")
    try:
        pcm = load_pcm16k(args.input)
    except (ValueError, OSError) as e:
        print(f"voicebot: {e}", file=sys.stderr)
        return 2
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
