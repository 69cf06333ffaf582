"""`voicebot models pull|list`: bigger models from the Hugging Face Hub, fetched on request only.

The one place voicebot downloads weights, and only when a user runs it (the server never does).
huggingface_hub does the transfer, so HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN and its progress
bars work as everywhere else. Each pull lands in a temporary folder beside its target, is
checked against the hub's checksums (sha256 for LFS files, git sha1 for the rest), then renamed
into place: a failed pull never leaves a half-written model where voicebot looks for one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

from voicebot import model_files
from voicebot.config import Settings
from voicebot.errors import DownloadError, InputError

Kind = Literal["whisper", "kokoro", "gguf"]

# The files faster-whisper itself fetches for a model (faster_whisper.utils.download_model).
WHISPER_FILES = (
    "config.json",
    "preprocessor_config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.*",
)
WHISPER_REQUIRED = ("model.bin", "config.json", "tokenizer.json")
# Kokoro-82M v1.0 as kokoro-onnx publishes it (the files Pipecat's KokoroTTSService names),
# mirrored on the hub by fastrtc.
KOKORO_REPO = "fastrtc/kokoro-onnx"
KOKORO_FILES = {"kokoro-model": "kokoro-v1.0.onnx", "kokoro-voices": "voices-v1.0.bin"}
GGUF_PREFIX = "gguf:"
# faster-whisper's short aliases, saved under the name auto-tuning looks for.
WHISPER_ALIASES = {"large": "large-v3", "turbo": "large-v3-turbo"}


@dataclass(frozen=True)
class ModelSpec:
    """One pullable model: where it lives on the hub and which of its files to fetch."""

    name: str
    kind: Kind
    repo_id: str
    files: tuple[str, ...]

    @property
    def folder(self) -> bool:
        """Whisper models are folders; Kokoro and GGUF models are single files."""
        return self.kind == "whisper"


@dataclass
class Pulled:
    """What one pull did: where the model is, at which hub commit, and the setting to use."""

    spec: ModelSpec
    path: Path
    revision: str | None
    already: bool
    files: list[dict[str, Any]] = field(default_factory=list)
    use: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "kind": self.spec.kind,
            "repo": self.spec.repo_id,
            "revision": self.revision,
            "path": str(self.path),
            "already_present": self.already,
            "files": self.files,
            "use": self.use,
        }


def whisper_repos() -> dict[str, str]:
    """faster-whisper's own size -> repository table (the one WhisperModel("NAME") uses)."""
    try:
        from faster_whisper.utils import _MODELS
    except ImportError as e:
        raise InputError(
            "Whisper models need faster-whisper: pip install 'voicebot[whisper]'"
        ) from e
    return dict(_MODELS)


def known_names() -> list[str]:
    return [*whisper_repos(), *KOKORO_FILES, f"{GGUF_PREFIX}OWNER/REPO/FILE.gguf"]


def resolve_name(name: str) -> ModelSpec:
    """The spec for a name as typed on the command line; InputError lists the known ones."""
    if name.startswith(GGUF_PREFIX):
        parts = name.removeprefix(GGUF_PREFIX).split("/")
        bad = any(part in ("", ".", "..") for part in parts)
        if len(parts) < 3 or bad or not parts[-1].endswith(".gguf"):
            raise InputError(
                f"{name!r}: a GGUF is named gguf:OWNER/REPO/FILE.gguf "
                "(e.g. gguf:bartowski/Qwen2.5-1.5B-Instruct-GGUF/Qwen2.5-1.5B-Instruct-Q4_K_M.gguf)"
            )
        return ModelSpec(name, "gguf", "/".join(parts[:2]), ("/".join(parts[2:]),))
    if name in KOKORO_FILES:
        return ModelSpec(name, "kokoro", KOKORO_REPO, (KOKORO_FILES[name],))
    repos = whisper_repos()
    if name in repos:
        name = WHISPER_ALIASES.get(name, name)
        return ModelSpec(name, "whisper", repos[name], WHISPER_FILES)
    raise InputError(f"unknown model {name!r}; known: {', '.join(known_names())}")


def whisper_target_dir(settings: Settings, models_dir: Path | None = None) -> Path:
    """Where pulled Whisper models go: the first folder the run-time lookup searches."""
    return models_dir or model_files.whisper_dirs(settings)[0]


def target_path(spec: ModelSpec, settings: Settings, models_dir: Path | None = None) -> Path:
    if spec.kind == "whisper":
        return whisper_target_dir(settings, models_dir) / spec.name
    if spec.kind == "kokoro":
        return model_files.cache_dir() / "kokoro" / spec.files[0]
    owner_repo = spec.repo_id.replace("/", "--")
    return model_files.cache_dir() / "gguf" / owner_repo / spec.files[0]


def _complete(spec: ModelSpec, path: Path) -> bool:
    if not spec.folder:
        return path.is_file()
    return all((path / f).is_file() for f in WHISPER_REQUIRED) and any(path.glob("vocabulary.*"))


def _use(spec: ModelSpec, path: Path, settings: Settings, models_dir: Path | None) -> str:
    """The setting that makes voicebot use what was pulled."""
    if spec.kind == "gguf":
        return f"llm.llama_cpp.model_path={path}  (VOICEBOT_LLM__LLAMA_CPP__MODEL_PATH={path})"
    if spec.kind == "kokoro":
        key = "model_path" if spec.name == "kokoro-model" else "voices_path"
        return (
            f"tts.kokoro.{key}={path}  (VOICEBOT_TTS__KOKORO__{key.upper()}={path}; "
            "set both model_path and voices_path)"
        )
    if path.parent in model_files.whisper_dirs(settings):
        return (
            f"stt.whisper.model=auto picks it on a GPU that suits it, or set "
            f"stt.whisper.model={spec.name}"
        )
    return (
        f"stt.whisper.models_dir={path.parent}  (VOICEBOT_STT__WHISPER__MODELS_DIR="
        f"{path.parent}), then stt.whisper.model=auto or {spec.name}"
    )


def _endpoint(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return endpoint or constants.ENDPOINT


def _fetch_error(
    spec: ModelSpec, target: Path, endpoint: str | None, e: Exception
) -> DownloadError:
    """A hub failure as a DownloadError that says what to change."""
    import httpx2
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = _endpoint(endpoint)
    if isinstance(e, OfflineModeIsEnabled):
        return DownloadError(
            f"{spec.name} is not in {target} and HF_HUB_OFFLINE is set, so it cannot be "
            "fetched: unset HF_HUB_OFFLINE, or pull it where the hub is reachable and copy it "
            f"to {target}"
        )
    if isinstance(e, RepositoryNotFoundError | RevisionNotFoundError):
        return DownloadError(f"{spec.repo_id} is not on the hub at {where} ({e.server_message})")
    if isinstance(e, httpx2.TransportError):
        return DownloadError(
            f"cannot reach the hub at {where} ({type(e).__name__}: {e}); check the network "
            "and HF_ENDPOINT (a mirror's URL), or pull it where the hub is reachable and copy "
            f"it to {target}"
        )
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if e.response is not None else "?"
        return DownloadError(f"the hub at {where} answered {status} for {spec.repo_id}: {e}")
    return DownloadError(f"fetching {spec.name} from {where} failed: {e}")


def pull(
    spec: ModelSpec,
    settings: Settings,
    *,
    models_dir: Path | None = None,
    endpoint: str | None = None,
    revision: str = "main",
) -> Pulled:
    """Fetch `spec` into its place unless it is already there; DownloadError says why not."""
    import httpx2
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    target = target_path(spec, settings, models_dir)
    if _complete(spec, target):
        return Pulled(spec, target, None, True, use=_use(spec, target, settings, models_dir))
    hub_errors = (httpx2.TransportError, HfHubHTTPError, OfflineModeIsEnabled)
    api = HfApi(endpoint=endpoint)
    try:
        commit = api.model_info(spec.repo_id, revision=revision).sha
    except hub_errors as e:
        raise _fetch_error(spec, target, endpoint, e) from e
    if commit is None:
        raise DownloadError(f"the hub at {_endpoint(endpoint)} gave no commit for {spec.repo_id}")

    target.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target, so the final rename stays on one file system.
    scratch = Path(tempfile.mkdtemp(prefix=f".pull-{target.name}-", dir=target.parent))
    try:
        snapshot_download(
            spec.repo_id,
            revision=commit,
            allow_patterns=list(spec.files),
            local_dir=scratch,
            endpoint=endpoint,
        )
        files = _verify(api, spec, commit, scratch)
        shutil.rmtree(scratch / ".cache", ignore_errors=True)
        _move_into_place(spec, scratch, target)
    except LocalEntryNotFoundError as e:  # the hub went away mid-pull: report why
        cause = e.__cause__ if isinstance(e.__cause__, Exception) else e
        raise _fetch_error(spec, target, endpoint, cause) from e
    except hub_errors as e:
        raise _fetch_error(spec, target, endpoint, e) from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Pulled(spec, target, commit, False, files, _use(spec, target, settings, models_dir))


def _verify(api: Any, spec: ModelSpec, commit: str, folder: Path) -> list[dict[str, Any]]:
    """Check every fetched file against the hub's checksum; the files, sizes and hashes."""
    check = api.verify_repo_checksums(spec.repo_id, revision=commit, local_dir=folder)
    if check.mismatches:
        bad = ", ".join(
            f"{m['path']} ({m['algorithm']} {m['actual'][:12]}..., the hub says "
            f"{m['expected'][:12]}...)"
            for m in check.mismatches
        )
        raise DownloadError(
            f"{spec.name}: downloaded files do not match the hub's checksums: {bad}. Nothing "
            "was kept; pull again (a proxy or mirror may be altering files)"
        )
    wanted = {p for p in check.missing_paths if any(fnmatch(p, f) for f in spec.files)}
    fetched = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(folder).parts
    )
    if wanted or not fetched:
        missing = ", ".join(sorted(wanted)) or ", ".join(spec.files)
        raise DownloadError(
            f"{spec.repo_id} at {commit[:12]} has no {missing}; check the name "
            f"({'faster-whisper model' if spec.folder else 'file name'})"
        )
    if spec.folder and not _complete(spec, folder):
        raise DownloadError(
            f"{spec.repo_id} is not a faster-whisper model: it lacks "
            f"{', '.join(WHISPER_REQUIRED)} or vocabulary.*"
        )
    from huggingface_hub.utils.sha import sha_fileobj

    summary = []
    for name in fetched:
        with (folder / name).open("rb") as f:
            digest = sha_fileobj(f).hex()
        summary.append({"path": name, "bytes": (folder / name).stat().st_size, "sha256": digest})
    return summary


def _move_into_place(spec: ModelSpec, scratch: Path, target: Path) -> None:
    if not spec.folder:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(scratch / spec.files[0], target)
        return
    scratch.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
    old = None
    if target.exists():  # an incomplete folder: swap it out, drop it once the new one is in
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.replace(target, old)
    os.replace(scratch, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def whisper_inventory(settings: Settings) -> list[dict[str, Any]]:
    """Every Whisper model auto-tuning could pick, and where (if anywhere) it is on disk."""
    from voicebot.autotune import WHISPER_LADDER

    # English-only checkpoints exist up to medium; auto picks them when stt.language is en.
    english = ("tiny", "base", "small", "medium")
    names = [n for f in WHISPER_LADDER for n in ((f"{f}.en", f) if f in english else (f,))]
    dirs = model_files.whisper_dirs(settings)
    extra = sorted(
        {
            p.name
            for d in dirs
            if d.is_dir()
            for p in d.iterdir()
            if (p / "model.bin").is_file() and not p.name.startswith(".")  # not a pull under way
        }
        - set(names)
    )
    rows = []
    for name in [*names, *extra]:
        on_disk = model_files.whisper_on_disk(name, settings)
        folder = model_files.whisper_in_dirs(name, settings)
        where = str(folder) if folder else ("bundled" if on_disk else None)
        rows.append({"name": name, "on_disk": on_disk, "path": where})
    return rows


def file_inventory() -> list[str]:
    """The pulled or baked-in Kokoro and GGUF files (their settings take these paths)."""
    roots = [model_files.cache_dir(), model_files.installed_dir()]
    return sorted(
        str(path)
        for root in roots
        for kind in ("kokoro", "gguf")
        if (root / kind).is_dir()
        for path in (root / kind).rglob("*")
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(root).parts)
    )
