"""Who may use this server: API keys for backends, short-lived session tokens for the rest.

A backend holding a key (`Authorization: Bearer KEY`, keys from VOICEBOT_API_KEYS) calls
`POST /start` and gets a signed token bound to one transport and one session id, usable
once within `server.session_token_ttl_secs`; the browser or app connects with `?token=`.
Without keys the server serves only its own machine (loopback addresses), unless
`server.insecure_no_auth` is set. Behind a proxy (RunPod, Cloud Run) every client comes
from the proxy's address, so such servers need keys. `/health` and the pages stay open.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from loguru import logger
from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from voicebot.config import Settings
from voicebot.errors import ConfigError

Transport = Literal["ws", "websocket", "webrtc"]

# Close codes in the private range (4000-4999), mirroring HTTP 401 and 403.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
# RFC 6455: a close reason fits in 123 bytes.
MAX_CLOSE_REASON_BYTES = 123
# RFC 6455: "try again later".
CLOSE_TRY_AGAIN_LATER = 1013

# Used token ids are kept until their token expires; past this many the server refuses new
# sessions (HTTP 503) rather than forget one and let its token be replayed.
MAX_USED_TOKENS = 100_000

# Reachable without a key: the health probe and the static pages.
PUBLIC_PATHS = frozenset({"/health", "/", "/favicon.ico", "/client"})
PUBLIC_PREFIXES = ("/static/", "/prebuilt", "/client/")
WEBSOCKET_TRANSPORTS: dict[str, Transport] = {"/ws": "ws", "/ws-client": "websocket"}
_SESSION_OFFER = re.compile(r"^/sessions/(?P<sid>[^/]+)/api/offer$")

SESSION_STATE_KEY = "voicebot_session"


_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']+")


class _RedactTokens(logging.Filter):
    """Masks `token=...` in uvicorn's request lines (they log the path with its query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_TEXT.sub(r"\1REDACTED", a) if isinstance(a, str) else a
                for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_TEXT.sub(r"\1REDACTED", record.msg)
        return True


def redact_tokens_in_server_logs() -> None:
    """Keep session tokens out of uvicorn's access and WebSocket log lines (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _RedactTokens) for f in log.filters):
            log.addFilter(_RedactTokens())


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback); False for anything else."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_exposure(settings: Settings) -> None:
    """Raise ConfigError for a non-loopback `server.host` with no API keys, unless
    `server.insecure_no_auth` is set: such a server could not tell its callers apart."""
    host = settings.server.host
    if settings.secrets.api_key_list() or settings.server.insecure_no_auth:
        return
    if host != "localhost" and not is_loopback(host):
        raise ConfigError(
            f"server.host {host} lets other machines connect, but no API keys are set: "
            "set VOICEBOT_API_KEYS (comma-separated keys for your backends), or pass "
            "--insecure-no-auth to serve anyone without a key"
        )


def log_access_mode(settings: Settings) -> None:
    """Say at start-up who may use the server."""
    keys = len(settings.secrets.api_key_list())
    if keys:
        logger.bind(keys=keys).info("API keys set: callers need a key or a session token")
    elif settings.server.insecure_no_auth:
        logger.warning("insecure_no_auth: anyone who reaches this port may run sessions")
    else:
        logger.info("no API keys set (VOICEBOT_API_KEYS): serving clients on this machine only")


class AccessDenied(Exception):
    """A refused caller: `status` for HTTP, `close_code` for WebSockets, and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    @property
    def close_code(self) -> int:
        codes = {403: CLOSE_FORBIDDEN, 503: CLOSE_TRY_AGAIN_LATER}
        return codes.get(self.status, CLOSE_UNAUTHORIZED)


def _clocked_signer(clock: Callable[[], float]) -> type[TimestampSigner]:
    class ClockedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return ClockedSigner


class SessionTokens:
    """Signed, single-use session tokens: `{transport, session id}` valid `ttl_secs`."""

    def __init__(
        self,
        secret: str | None,
        *,
        ttl_secs: float,
        max_used: int = MAX_USED_TOKENS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_secs = ttl_secs
        self._clock = clock
        self._max_used = max_used
        self._serializer = URLSafeTimedSerializer(
            secret or secrets.token_urlsafe(32),
            salt="voicebot-session",
            signer=_clocked_signer(clock),
        )
        self._used: OrderedDict[str, float] = OrderedDict()

    def issue(self, transport: Transport, session_id: str) -> str:
        return str(self._serializer.dumps({"t": transport, "s": session_id}))

    def verify(
        self,
        token: str,
        transport: Transport,
        *,
        session_id: str | None = None,
        consume: bool = True,
    ) -> str:
        """The token's session id; raises AccessDenied (401) if it is not valid here."""
        try:
            claims: Any = self._serializer.loads(token, max_age=math.ceil(self.ttl_secs))
        except SignatureExpired as e:
            raise AccessDenied(401, "session token expired; ask for a new one") from e
        except BadSignature as e:
            raise AccessDenied(401, "session token is not valid") from e
        if not isinstance(claims, dict) or not isinstance(claims.get("s"), str):
            raise AccessDenied(401, "session token is not valid")
        if claims.get("t") != transport:
            issued = claims.get("t")
            raise AccessDenied(401, f"session token is for transport {issued!r}, not {transport!r}")
        sid: str = claims["s"]
        if session_id is not None and sid != session_id:
            raise AccessDenied(401, "session token belongs to another session")
        if consume:
            self._consume(sid)
        return sid

    def _consume(self, sid: str) -> None:
        now = self._clock()
        while self._used and next(iter(self._used.values())) <= now:
            self._used.popitem(last=False)
        if sid in self._used:
            raise AccessDenied(401, "session token was already used; ask for a new one")
        if len(self._used) >= self._max_used:
            raise AccessDenied(503, "too many sessions started recently; retry shortly")
        # Kept a second past the token's own expiry, so clock rounding cannot reopen it.
        self._used[sid] = now + self.ttl_secs + 1.0


@dataclass(frozen=True)
class Caller:
    """Who a request comes from, as far as access is concerned."""

    host: str | None
    authorization: str | None
    token: str | None


class Access:
    """The server's access rules (see the module docstring)."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        secret = settings.secrets.session_secret
        self.keys = [key.encode() for key in settings.secrets.api_key_list()]
        self.insecure = settings.server.insecure_no_auth
        self.public_metrics = settings.server.public_metrics
        self.tokens = SessionTokens(
            secret.get_secret_value() if secret is not None else None,
            ttl_secs=settings.server.session_token_ttl_secs,
            clock=clock,
        )

    def check_caller(self, caller: Caller) -> None:
        """Allow a key holder, or anyone when no keys are set and the caller is local (or
        the server runs with insecure_no_auth); raise AccessDenied otherwise."""
        if self.keys:
            given = _bearer(caller.authorization)
            if given is None:
                raise AccessDenied(401, "an API key is required: send Authorization: Bearer KEY")
            if not any(hmac.compare_digest(given.encode(), key) for key in self.keys):
                raise AccessDenied(401, "API key not accepted")
            return
        if self.insecure or is_loopback(caller.host):
            return
        raise AccessDenied(
            403,
            "no API keys set: this server serves only its own machine (set VOICEBOT_API_KEYS)",
        )


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _is_public(path: str, access: Access) -> bool:
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return True
    return path == "/metrics" and access.public_metrics


class AccessMiddleware:
    """Refuses every request the access rules do not allow, before any route sees it.

    New routes are protected unless listed as public. A session token (`?token=`) is
    checked here for the routes it is issued for; the session id it carries is left in
    the request state (`session_id_from`) for the route.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        access: Access,
        on_refused: Callable[[Literal["unauthorized", "forbidden"]], None] | None = None,
    ) -> None:
        self.app = app
        self.access = access
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if scope["type"] == "http" and _is_public(path, self.access):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = scope.get("client")
        caller = Caller(
            host=client[0] if client else None,
            authorization=headers.get("authorization"),
            token=QueryParams(scope.get("query_string", b"").decode("latin-1")).get("token"),
        )
        try:
            session_id = self._admit(scope, path, caller)
        except AccessDenied as e:
            logger.bind(path=path[:100], status=e.status).info("refused a request")
            if self.on_refused is not None:
                self.on_refused("forbidden" if e.status == 403 else "unauthorized")
            await _refuse(scope, receive, send, e)
            return
        if session_id is not None:
            scope.setdefault("state", {})[SESSION_STATE_KEY] = session_id
        await self.app(scope, receive, send)

    def _admit(self, scope: Scope, path: str, caller: Caller) -> str | None:
        """The session id of a valid token, None for a caller allowed without one."""
        if caller.token is not None:
            if scope["type"] == "websocket" and path in WEBSOCKET_TRANSPORTS:
                return self.access.tokens.verify(caller.token, WEBSOCKET_TRANSPORTS[path])
            method = scope.get("method")
            offer = _SESSION_OFFER.match(path)
            if offer is not None or path == "/api/offer":
                sid = offer.group("sid") if offer is not None else None
                # The offer spends the token; ICE candidates (PATCH) follow it.
                return self.access.tokens.verify(
                    caller.token, "webrtc", session_id=sid, consume=method == "POST"
                )
            if path == "/start":
                # Our page, given a WebRTC token, asks /start for the session it names.
                return self.access.tokens.verify(caller.token, "webrtc", consume=False)
        self.access.check_caller(caller)
        return None


def session_id_from(state: Any) -> str | None:
    """The session id a verified token named for this request (None without a token)."""
    value = getattr(state, SESSION_STATE_KEY, None)
    return value if isinstance(value, str) else None


async def _refuse(scope: Scope, receive: Receive, send: Send, denied: AccessDenied) -> None:
    if scope["type"] == "http":
        headers = {"WWW-Authenticate": "Bearer"} if denied.status == 401 else None
        response = JSONResponse({"detail": denied.reason}, denied.status, headers=headers)
        await response(scope, receive, send)
        return
    # Accept, then close with a code and reason: a browser sees neither in an HTTP refusal.
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    reason = denied.reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
    await send({"type": "websocket.close", "code": denied.close_code, "reason": reason})
