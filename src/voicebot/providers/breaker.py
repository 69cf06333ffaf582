"""Process-wide circuit breakers: one per remote provider endpoint, shared by every session.

During an outage the first failure opens the breaker, and every session (new ones too)
skips that provider for the cool-down instead of paying its timeout again. Then one
request is let through as a trial (half-open): success closes the breaker, failure opens
it for another cool-down. Breakers are keyed by stage, provider id and endpoint (a fixed,
configured set), so their number and the metric labels made from them stay bounded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass
class CircuitBreaker:
    """Closed: requests go through. Open: they are skipped until the cool-down has passed.
    Half-open: one trial request goes through; the others are skipped until it ends."""

    stage: str
    provider: str
    cooldown_secs: float
    failures: int = 0
    _opened_at: float | None = None
    _trial_running: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._trial_running or time.monotonic() < self._opened_at + self.cooldown_secs:
            return "open"
        return "half_open"

    def allow(self) -> bool:
        """Whether to try the provider now; True in half-open makes the caller the trial,
        which must end in `succeeded()`, `failed()` or `abandoned()`."""
        with self._lock:
            state = self._state()
            if state == "half_open":
                self._trial_running = True
            return state != "open"

    def succeeded(self) -> None:
        with self._lock:
            self._opened_at = None
            self._trial_running = False

    def failed(self) -> None:
        with self._lock:
            self.failures += 1
            self._opened_at = time.monotonic()
            self._trial_running = False

    def abandoned(self) -> None:
        """The request ended without a verdict (the user interrupted): let another try."""
        with self._lock:
            self._trial_running = False


_BREAKERS: dict[tuple[str, str, str], CircuitBreaker] = {}
_LOCK = threading.Lock()


def breaker_for(stage: str, provider: str, endpoint: str, cooldown_secs: float) -> CircuitBreaker:
    """The process's breaker for `provider` at `endpoint` (made on first use).

    The cool-down is the latest configured one (one process normally has one config).
    """
    with _LOCK:
        key = (stage, provider, endpoint)
        found = _BREAKERS.get(key)
        if found is None:
            found = _BREAKERS[key] = CircuitBreaker(stage, provider, cooldown_secs)
        found.cooldown_secs = cooldown_secs
        return found


def breakers() -> list[CircuitBreaker]:
    """Every breaker made in this process, for /health and /metrics."""
    with _LOCK:
        return list(_BREAKERS.values())


def summary() -> dict[str, str]:
    """`{"llm/groq": "open", ...}`: each provider's worst state (for /health)."""
    rank = {"closed": 0, "half_open": 1, "open": 2}
    states: dict[str, State] = {}
    for breaker in breakers():
        name = f"{breaker.stage}/{breaker.provider}"
        state = breaker.state
        if name not in states or rank[state] > rank[states[name]]:
            states[name] = state
    return dict(states)
