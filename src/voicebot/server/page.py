"""The browser pages: our own self-contained page at `/`, Pipecat's prebuilt one at `/prebuilt/`.

Our page (static/) needs nothing from outside the server: no CDN, fonts or telemetry.
The prebuilt page loads daily-js, which downloads from Daily's CDN, so it only works online.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")

# The page holds no secrets, but it is the only thing a browser caches from us: revalidate
# so an upgraded server never runs with yesterday's JavaScript.
_NO_STALE = {"Cache-Control": "no-cache"}


class _RevalidatedStaticFiles(StaticFiles):
    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(_NO_STALE)
        return response


def mount_pages(app: FastAPI) -> None:
    """Serve our page at `/` (assets under `/static/`) and the prebuilt client at `/prebuilt/`."""

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_NO_STALE)

    app.mount("/static", _RevalidatedStaticFiles(directory=STATIC), name="static")

    # The package prints where it looks for its files; keep stdout clean for --json output.
    with contextlib.redirect_stdout(sys.stderr):
        from pipecat_ai_small_webrtc_prebuilt.frontend import SmallWebRTCPrebuiltUI

    app.mount("/prebuilt", SmallWebRTCPrebuiltUI)

    # The prebuilt page used to live at /client/: old links and bookmarks still land on it.
    @app.get("/client", include_in_schema=False)
    @app.get("/client/{rest:path}", include_in_schema=False)
    async def old_client(request: Request, rest: str = "") -> RedirectResponse:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(url=f"/prebuilt/{rest}{query}", status_code=308)
