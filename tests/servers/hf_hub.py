"""A local stand-in for the Hugging Face Hub's file API: the part huggingface_hub 2.x downloads.

Repositories are published from local files (the bundled model packages). It answers:
  GET  /api/models/{repo}/revision/{rev}  model info: `sha` (the commit) and `siblings`
  GET  /api/models/{repo}/tree/{rev}      the file listing: git blob ids, LFS sha256 and sizes
  HEAD|GET /{repo}/resolve/{rev}/{file}   the file, with X-Repo-Commit and ETag; LFS files
                                          redirect to a "CDN" on a second port with
                                          X-Linked-Etag (sha256) and X-Linked-Size, as the hub does
Errors carry the hub's X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound), so the
real client raises its real exceptions. `corrupt` names files whose bytes are served altered
while their checksums are still advertised. Every request is recorded in `requests`.

It runs on its own event loop in a thread, so blocking clients (huggingface_hub, a
`voicebot` subprocess) can use it from plain tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

# Files the hub keeps in LFS (the real rule is .gitattributes; these suffixes are its defaults).
LFS_SUFFIXES = {".bin", ".onnx", ".gguf", ".npz", ".safetensors"}


@dataclass(frozen=True)
class HubFile:
    path: str
    source: Path
    size: int
    sha256: str
    git_sha1: str  # of the file, or of its LFS pointer
    pointer_size: int | None  # set for LFS files

    @classmethod
    def of(cls, path: str, source: Path) -> HubFile:
        data = source.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        if Path(path).suffix in LFS_SUFFIXES:
            pointer = (
                f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
                f"size {len(data)}\n"
            ).encode()
            return cls(path, source, len(data), sha256, _git_sha1(pointer), len(pointer))
        return cls(path, source, len(data), sha256, _git_sha1(data), None)

    @property
    def lfs(self) -> bool:
        return self.pointer_size is not None


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    commit: str


@dataclass
class HubStandIn:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)  # "repo_id/file" entries
    requests: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0
    # LFS files come from another origin, as the hub's CDN does (the client treats it so).
    cdn_port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, repo_id: str, files: dict[str, Path]) -> HubRepo:
        """Serve `files` (repo path -> local file) as the `main` revision of `repo_id`."""
        entries = {path: HubFile.of(path, source) for path, source in files.items()}
        commit = hashlib.sha1(
            repo_id.encode() + b"".join(f.git_sha1.encode() for f in entries.values())
        ).hexdigest()
        self.repos[repo_id] = HubRepo(repo_id, entries, commit)
        return self.repos[repo_id]

    # ---- routes ----------------------------------------------------------------------

    def _repo(self, request: web.Request) -> HubRepo:
        repo = self.repos.get(f"{request.match_info['owner']}/{request.match_info['name']}")
        if repo is None:
            raise _error("RepoNotFound", "Repository not found")
        if request.match_info["rev"] not in ("main", repo.commit):
            raise _error("RevisionNotFound", "Invalid rev id", repo.commit)
        return repo

    async def _info(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        return web.json_response(
            {
                "_id": repo.commit[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": repo.commit,
                "private": False,
                "lastModified": "2026-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": path} for path in repo.files],
            }
        )

    async def _tree(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        listing = []
        for f in repo.files.values():
            entry: dict[str, object] = {"type": "file", "oid": f.git_sha1, "size": f.size}
            entry["path"] = f.path
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            listing.append(entry)
        return web.json_response(listing)

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        repo = self._repo(request)
        entry = repo.files.get(request.match_info["file"])
        headers = {"X-Repo-Commit": repo.commit}
        if entry is None:
            raise _error("EntryNotFound", "Entry not found", repo.commit)
        if entry.lfs:
            headers |= {
                "ETag": f'"{entry.git_sha1}"',
                "X-Linked-Etag": f'"{entry.sha256}"',
                "X-Linked-Size": str(entry.size),
                "Location": f"http://127.0.0.1:{self.cdn_port}/cdn/{repo.repo_id}/{entry.sha256}",
            }
            return web.Response(status=302, headers=headers)
        headers["ETag"] = f'"{entry.git_sha1}"'
        return await self._send(request, repo, entry, headers)

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        repo = self.repos[f"{request.match_info['owner']}/{request.match_info['name']}"]
        (entry,) = [f for f in repo.files.values() if f.sha256 == request.match_info["sha"]]
        return await self._send(request, repo, entry, {"ETag": f'"{entry.sha256}"'})

    async def _send(
        self, request: web.Request, repo: HubRepo, entry: HubFile, headers: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=headers)
        response.content_length = entry.size
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        data = entry.source.read_bytes()
        if f"{repo.repo_id}/{entry.path}" in self.corrupt:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        for start in range(0, len(data), 1 << 20):
            await response.write(data[start : start + (1 << 20)])
        await response.write_eof()
        return response

    @web.middleware
    async def _record(
        self, request: web.Request, handler: web.RequestHandler
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        repo = "/{owner}/{name}"
        app.router.add_get(f"/api/models{repo}/revision/{{rev}}", self._info)
        app.router.add_get(f"/api/models{repo}/tree/{{rev}}", self._tree)
        app.router.add_route("HEAD", f"{repo}/resolve/{{rev}}/{{file:.+}}", self._resolve)
        app.router.add_get(f"{repo}/resolve/{{rev}}/{{file:.+}}", self._resolve, allow_head=False)
        app.router.add_get(f"/cdn{repo}/{{sha}}", self._cdn)
        return app


def _error(code: str, message: str, commit: str | None = None) -> web.HTTPNotFound:
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    if commit:
        headers["X-Repo-Commit"] = commit
    return web.HTTPNotFound(headers=headers, text=json.dumps({"error": message}))


@contextmanager
def hf_hub_stand_in() -> Iterator[HubStandIn]:
    """A running stand-in on a free 127.0.0.1 port, served from a background thread."""
    hub = HubStandIn()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(hub.app(), access_log=None)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        for _ in ("hub", "cdn"):
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        hub.port, hub.cdn_port = (address[1] for address in runner.addresses)
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="hf-hub-stand-in", daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the hub stand-in did not start")
    try:
        yield hub
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
