"""Print a ready-to-use page URL once the server is up (run by entrypoint.sh in the background).

Waits for GET /health to answer 200, asks POST /start for a WebRTC session with the API key,
and prints the page link it returns: single-use, valid for server.session_token_ttl_secs.
The key itself is never printed. VOICEBOT_PUBLIC_URL (e.g. RunPod's proxy URL) replaces
http://127.0.0.1:PORT in the printed link.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("VOICEBOT_SERVER__PORT") or os.environ.get("PORT") or "7860"
    key = os.environ.get("VOICEBOT_API_KEYS", "").split(",")[0].strip()
    local = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 1800  # first starts download nothing, but load slowly
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{local}/health", timeout=4) as reply:
                if reply.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(2)
    else:
        return 1
    request = urllib.request.Request(
        f"{local}/start",
        data=json.dumps({"transport": "webrtc"}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            page = json.load(reply)["pageUrl"]
    except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
        print(f"voicebot: could not make a session link: {e}", file=sys.stderr)
        return 1
    public = os.environ.get("VOICEBOT_PUBLIC_URL", "").rstrip("/")
    if public:
        page = public + page[len(local) :]
    print(f"voicebot: ready; open (once, within 5 minutes)  {page}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
