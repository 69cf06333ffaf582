"""The image's HEALTHCHECK: exit 0 when GET /health on the server's own port answers 200.

Python, not curl: the runtime image has no curl. The port is found the way the entry
point finds it (VOICEBOT_SERVER__PORT, then PORT, then 7860).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("VOICEBOT_SERVER__PORT") or os.environ.get("PORT") or "7860"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as reply:
            return 0 if reply.status == 200 else 1
    except (urllib.error.URLError, OSError) as e:
        print(f"health check failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
