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
from voicebot.observability.logging import setup_logging, uvicorn_log_config


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
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=None,
        help="serve other machines without API keys (anyone reaching the port may use it)",
    )
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

    models = commands.add_parser(
        "models", help="fetch bigger models (the only command that downloads anything)"
    )
    models_kinds = models.add_subparsers(dest="models_command", required=True)
    pull = models_kinds.add_parser(
        "pull", help="download models from the Hugging Face Hub (HF_ENDPOINT, HF_HUB_OFFLINE)"
    )
    pull.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="a faster-whisper size (tiny.en ... large-v3, large-v3-turbo), kokoro-model, "
        "kokoro-voices, or gguf:OWNER/REPO/FILE.gguf",
    )
    pull.add_argument(
        "--models-dir",
        type=Path,
        help="folder for Whisper models (default: stt.whisper.models_dir, "
        "else $VOICEBOT_CACHE_DIR/whisper)",
    )
    pull.add_argument("--json", action="store_true", help="print one JSON object")
    pull.add_argument("--config", type=Path, help="YAML profile (default: $VOICEBOT_CONFIG)")
    pull.set_defaults(run=_models_pull)
    listing = models_kinds.add_parser(
        "list", help="the Whisper models on disk and the one auto-tuning picks"
    )
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_flag(listing)
    listing.set_defaults(run=_models_list)

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
        help="the bundled Piper samples, or espeak-ng/Piper/Kokoro voices never tuned on",
    )
    turn.add_argument(
        "--half",
        choices=("heldout", "tune", "all"),
        default="heldout",
        help="with --voices unseen: which half of the set (default: held-out)",
    )
    _add_config_flag(turn)
    turn.set_defaults(run=_bench_turn)
    barge = bench_kinds.add_parser(
        "barge-in", help="speech and noise played over the bot's reply through /ws"
    )
    barge.add_argument("--repeat", type=int, default=3, help="rounds of every case (default 3)")
    barge.add_argument("--output", type=Path, default=Path("bench-results/barge-in.json"))
    barge.add_argument("--url", help="measure a running server instead of starting one")
    _add_config_flag(barge)
    barge.set_defaults(run=_bench_barge_in)
    sessions = bench_kinds.add_parser(
        "sessions", help="several clients at once through /ws: latency, LLM queue, audio gaps"
    )
    sessions.add_argument(
        "--levels", type=int, nargs="+", default=[1, 2, 4], help="concurrent sessions per run"
    )
    sessions.add_argument("--turns", type=int, default=4, help="turns per session (default 4)")
    sessions.add_argument("--output", type=Path, default=Path("bench-results/sessions.json"))
    sessions.add_argument("--url", help="measure a running server instead of starting one")
    _add_config_flag(sessions)
    sessions.set_defaults(run=_bench_sessions)
    ends = bench_kinds.add_parser(
        "sentence-ends", help="how likely the LLM judges finished and paused words to end"
    )
    ends.add_argument("--output", type=Path, default=Path("bench-results/sentence-ends.json"))
    _add_config_flag(ends)
    ends.set_defaults(run=_bench_sentence_ends)
    replies = bench_kinds.add_parser(
        "replies", help="replies that repeat a sentence or run to llm.max_tokens, per penalty"
    )
    replies.add_argument(
        "--penalties", type=float, nargs="+", default=[1.0, 1.1], help="llm.repeat_penalty values"
    )
    replies.add_argument("--rounds", type=int, default=2, help="times each prompt is asked")
    replies.add_argument("--prompts", type=int, help="only the first N prompts")
    replies.add_argument("--output", type=Path, default=Path("bench-results/replies.json"))
    _add_config_flag(replies)
    replies.set_defaults(run=_bench_replies)
    _add_bench_sections(bench_kinds)
    compare = bench_kinds.add_parser("compare", help="what got slower or faster between two runs")
    compare.add_argument("old", type=Path, help="the earlier report (JSON)")
    compare.add_argument("new", type=Path, help="the later report (JSON)")
    compare.add_argument(
        "--threshold", type=float, default=0.1, help="smallest change shown (default 0.1 = 10%%)"
    )
    compare.set_defaults(run=_bench_compare)
    reliability = bench_kinds.add_parser(
        "reliability",
        help="fuzz (hostile messages), soak (sessions aborted mid-turn) or a long session",
    )
    reliability.add_argument("kind", choices=("fuzz", "soak", "long"))
    reliability.add_argument("--messages", type=int, default=10_000, help="fuzz: messages")
    reliability.add_argument(
        "--sessions", type=int, default=None, help="sessions (fuzz: 50, soak: 500)"
    )
    reliability.add_argument("--minutes", type=float, default=10.0, help="long: duration")
    reliability.add_argument("--seed", type=int, default=1, help="fuzz: random seed")
    reliability.add_argument("--output", type=Path, default=None)
    reliability.add_argument("--url", help="a running server's /ws URL instead of starting one")
    _add_config_flag(reliability)
    reliability.set_defaults(run=_bench_reliability)

    loop = bench_kinds.add_parser(
        "loop", help="voicebot beside a hand-written loop and a stock Pipecat bot, same client"
    )
    loop.add_argument(
        "--systems",
        default="voicebot,loop,stock",
        help=(
            "comma-separated, measured in this order: voicebot, loop, stock (default: all); "
            "voicebot@section.key=value[@...] is voicebot with settings changed, for an A/B "
            "in one run (e.g. voicebot,voicebot@turn.speculative=true)"
        ),
    )
    loop.add_argument("--voices", choices=("samples", "unseen"), default="unseen")
    loop.add_argument("--half", choices=("heldout", "tune", "all"), default="heldout")
    loop.add_argument("--turns", type=int, help="use only the first N utterances")
    loop.add_argument("--warmup", type=int, default=1, help="unmeasured turns first (default 1)")
    loop.add_argument(
        "--starts",
        type=int,
        default=0,
        help="more cold starts per system, taking turns, for a median start-to-warm (default 0)",
    )
    loop.add_argument(
        "--interleave",
        action="store_true",
        help="all systems up at once, each utterance spoken to each in a rotating order",
    )
    loop.add_argument("--turn-timeout", type=float, default=60.0, help="seconds (default 60)")
    loop.add_argument("--start-timeout", type=float, default=300.0, help="seconds (default 300)")
    loop.add_argument("--output", type=Path, default=Path("bench-results/loop.json"))
    _add_config_flag(loop)
    loop.set_defaults(run=_bench_loop)
    return parser


def _add_bench_sections(bench_kinds: Any) -> None:
    """`bench suite` and one command per section, all over voicebot.bench.suite."""
    from voicebot.bench import SECTIONS

    commands = {
        "suite": ("every section: STT, batch sweep, TTS, LLM, turn; JSON + PNGs", SECTIONS),
        "stt": (
            "Whisper models x precisions x lengths, and the batch-size sweep",
            ("stt", "batch"),
        ),
        "tts": ("every TTS provider: first audio, RTF, leading silence, intelligibility", ("tts",)),
        "llm": ("time to first token and tokens/s per LLM backend", ("llm",)),
    }
    for name, (text, sections) in commands.items():
        command = bench_kinds.add_parser(name, help=text)
        command.add_argument(
            "--output",
            type=Path,
            default=Path(f"bench-results/{name}"),
            help=f"folder for {name}.json and the plots (default bench-results/{name})",
        )
        command.add_argument("--quick", action="store_true", help="smallest run of each section")
        command.add_argument("--device", choices=("cpu", "cuda"), help="default: auto-tuned")
        command.add_argument("--repeats", type=int, help="runs per figure (quick 1, full 3)")
        if "stt" in sections:
            command.add_argument("--models", nargs="+", help="Whisper models (default: all)")
            command.add_argument("--models-dir", type=Path, help="folder of CTranslate2 models")
            command.add_argument(
                "--compute-types", nargs="+", help="default: int8 float16 bfloat16"
            )
            command.add_argument("--lengths", nargs="+", type=float, help="utterance seconds")
            command.add_argument("--batch-sizes", nargs="+", type=int, help="concurrent utterances")
        if "tts" in sections:
            command.add_argument("--providers", nargs="+", help="TTS providers (default: all)")
            command.add_argument(
                "--edge",
                choices=("standin", "live"),
                default="standin",
                help="Edge through the local stand-in (default) or Microsoft's service",
            )
        if "llm" in sections:
            command.add_argument("--backends", nargs="+", help="LLM backends (default: all)")
            command.add_argument("--replies", type=int, help="questions per backend")
        if "turn" in sections:
            command.add_argument("--turns", type=int, help="turns through /ws (quick 2, full 10)")
        _add_config_flag(command)
        command.set_defaults(run=_bench_suite, benchmark=name, sections=sections)


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
    given = (("host", args.host), ("port", args.port), ("insecure_no_auth", args.insecure_no_auth))
    flags = {k: v for k, v in given if v is not None}
    from voicebot.server.auth import check_exposure

    # Before the GPU probe and the models: a refused start should be quick.
    check_exposure(load_settings(args.config, {"server": flags} if flags else None))
    return _serve(_tuned(args, flags))


def _daily(args: argparse.Namespace) -> int:
    from voicebot.tools.daily_bot import join_room

    settings = _settings(args)
    setup_logging(settings.server.log_level)
    reason = asyncio.run(join_room(settings, args.room, args.token))
    print(f"session ended: {reason or 'pipeline finished'}")
    return 0


def _bench_barge_in(args: argparse.Namespace) -> int:
    from voicebot.bench.barge_in import run_barge_in_bench

    setup_logging("WARNING")
    report = asyncio.run(run_barge_in_bench(_settings(args), args.repeat, args.output, args.url))
    print(json.dumps(report["summary"], indent=2))
    return 0


def _bench_sessions(args: argparse.Namespace) -> int:
    from voicebot.bench.sessions import run_sessions_bench

    setup_logging("WARNING")
    asyncio.run(run_sessions_bench(_settings(args), args.levels, args.turns, args.output, args.url))
    return 0


def _bench_sentence_ends(args: argparse.Namespace) -> int:
    from voicebot.bench.sentence_ends import run_sentence_ends_bench

    setup_logging("WARNING")
    run_sentence_ends_bench(_settings(args), args.output)
    return 0


def _bench_replies(args: argparse.Namespace) -> int:
    from voicebot.bench.replies import run_replies_bench

    setup_logging("WARNING")
    asyncio.run(
        run_replies_bench(
            _settings(args),
            args.output,
            penalties=args.penalties,
            rounds=args.rounds,
            prompts=args.prompts,
        )
    )
    return 0


def _bench_turn(args: argparse.Namespace) -> int:
    from voicebot.bench.turn import run_turn_bench

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


def _bench_suite(args: argparse.Namespace) -> int:
    from voicebot.autotune import resolve
    from voicebot.bench.report import variant

    try:
        from voicebot.bench.suite import Plan, run_suite
    except ImportError as e:  # matplotlib, jiwer or jsonschema missing
        raise InputError(
            f"voicebot bench {args.bench} needs the bench extra ({e.name} is missing): "
            "pip install 'voicebot[bench]'"
        ) from e

    setup_logging("WARNING")
    settings = load_settings(args.config)
    if args.device:
        settings = variant(
            settings,
            {
                "stt": {"whisper": {"device": args.device}},
                "tts": {"device": args.device},
                "llm": {"transformers": {"device": args.device}},
            },
        )
    if getattr(args, "models_dir", None):
        settings = variant(settings, {"stt": {"whisper": {"models_dir": args.models_dir}}})
    try:
        tuned = resolve(settings, assume_gpu=args.assume_gpu)
    except ValueError as e:
        raise ConfigError(str(e)) from e

    def given(name: str) -> tuple[Any, ...] | None:
        value = getattr(args, name, None)
        return tuple(value) if value else None

    plan = Plan(
        quick=args.quick,
        sections=args.sections,
        models=given("models"),
        compute_types=given("compute_types"),
        lengths_s=given("lengths"),
        batch_sizes=given("batch_sizes"),
        tts_providers=given("providers"),
        llm_backends=given("backends"),
        replies=getattr(args, "replies", None),
        turns=getattr(args, "turns", None),
        repeats=args.repeats,
        edge=getattr(args, "edge", "standin"),
    )
    return asyncio.run(run_suite(tuned, plan, args.output, args.benchmark))


def _bench_compare(args: argparse.Namespace) -> int:
    from voicebot.bench.compare import compare, load

    for line in compare(load(args.old), load(args.new), args.threshold):
        print(line)
    return 0


def _bench_reliability(args: argparse.Namespace) -> int:
    from voicebot.bench.reliability import passed, run_reliability

    setup_logging("WARNING")
    sessions = args.sessions or (500 if args.kind == "soak" else 50)
    output = args.output or Path(f"bench-results/reliability-{args.kind}.json")
    report = asyncio.run(
        run_reliability(
            args.kind,
            _settings(args),
            output=output,
            url=args.url,
            messages=args.messages,
            sessions=sessions,
            minutes=args.minutes,
            seed=args.seed,
        )
    )
    problems = passed(report)
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    for problem in problems:
        print(f"voicebot: reliability {args.kind}: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _bench_loop(args: argparse.Namespace) -> int:
    from voicebot.bench.loop import Options, run_loop_bench

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
                starts=max(0, args.starts),
                interleave=args.interleave,
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


def _models_pull(args: argparse.Namespace) -> int:
    from voicebot.tools.models import pull, resolve_name

    specs = [resolve_name(name) for name in args.names]  # every name checked before any fetch
    settings = load_settings(args.config)
    pulled = []
    for spec in specs:
        done = pull(spec, settings, models_dir=args.models_dir)
        pulled.append(done)
        if not args.json:
            state = "already present" if done.already else f"pulled from {spec.repo_id}"
            print(f"{spec.name}: {state}: {done.path}")
            print(f"  use: {done.use}")
    if args.json:
        print(json.dumps({"pulled": [p.summary() for p in pulled]}))
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from voicebot.tools.models import file_inventory, whisper_inventory

    tuned = _tuned(args)
    settings = load_settings(args.config)
    rows = whisper_inventory(settings)
    auto = {
        "model": tuned.settings.stt.whisper.model,
        "reason": tuned.decisions.get("stt.whisper.model", "set explicitly"),
    }
    files = file_inventory()
    if args.json:
        print(json.dumps({"whisper": rows, "auto": auto, "files": files}))
        return 0
    for row in rows:
        where = row["path"] or f"not on disk: voicebot models pull {row['name']}"
        print(f"{row['name']:<16} {where}")
    print(f"stt.whisper.model = {auto['model']!r}    [{auto['reason']}]")
    for path in files:
        print(f"file: {path}")
    return 0


def _serve(tuned: Tuned) -> int:
    from loguru import logger

    from voicebot.models import SharedModels
    from voicebot.providers import spec as providers
    from voicebot.server.auth import check_exposure, log_access_mode

    settings = tuned.settings
    setup_logging(settings.server.log_level)
    check_exposure(settings)
    log_access_mode(settings)
    for key, reason in tuned.decisions.items():
        logger.bind(setting=key, reason=reason).info("auto-tuned")
    providers.check(settings)
    # The models load while the server's modules import (voicebot.server's docstring).
    loading = SharedModels.load_in_background(settings)

    import uvicorn

    from voicebot.server import create_app
    from voicebot.server.drain import DrainingServer
    from voicebot.server.ws_protocol import websocket_options

    app = create_app(settings, loading=loading, decisions=tuned.decisions)
    config = uvicorn.Config(
        app,
        log_config=uvicorn_log_config(),
        host=settings.server.host,
        port=settings.server.port,
        **websocket_options(settings.server.max_message_bytes),
        log_level=settings.server.log_level.lower()
        if settings.server.log_level != "TRACE"
        else "trace",
        # After the drain has closed every session: a bound on lingering HTTP requests.
        timeout_graceful_shutdown=5,
    )
    server = DrainingServer(config, drain=app.state.drain, drain_secs=settings.server.drain_secs)
    server.run()
    return 0 if server.started else 3


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
