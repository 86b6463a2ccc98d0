"""Review page sessions and sign-in throttling (used by ``ticket_triage.review.app``).

:class:`Sessions` keeps sessions server-side: the signed cookie only carries a random session
id; logout deletes it, so a copied cookie is worthless afterwards. :class:`SignInThrottle`
counts failed sign-ins per client address and per reviewer name in a sliding window.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

__all__ = ["Sessions", "SignInThrottle"]


class Sessions:
    """Server-side sessions: session id -> (reviewer, expiry). In memory, one per app, so a
    restart signs everyone out; logout deletes the id, and a replayed cookie finds nothing."""

    def __init__(self, max_age_s: float, clock: Any = None) -> None:
        self.max_age_s = float(max_age_s)
        self.clock = clock or time.time
        self._lock = threading.Lock()
        self._live: dict[str, tuple[str, float]] = {}

    def open(self, reviewer: str) -> str:
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._live = {k: v for k, v in self._live.items() if v[1] > now}  # drop expired
            self._live[sid] = (reviewer, now + self.max_age_s)
        return sid

    def reviewer(self, sid: Any) -> str | None:
        if not isinstance(sid, str):
            return None
        with self._lock:
            entry = self._live.get(sid)
        if entry is None or entry[1] <= self.clock():
            return None
        return entry[0]

    def close(self, sid: Any) -> None:
        with self._lock:
            self._live.pop(sid, None) if isinstance(sid, str) else None

    def __len__(self) -> int:
        return len(self._live)


class SignInThrottle:
    """At most ``max_failures`` failed sign-ins per client address and per reviewer name in a
    sliding ``window_s``; then sign-in answers 429 until the oldest failure leaves the window."""

    def __init__(self, max_failures: int = 5, window_s: float = 900.0, clock: Any = None) -> None:
        self.max_failures, self.window_s = int(max_failures), float(window_s)
        self.clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._fails: dict[str, list[float]] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._fails.get(key, ()) if t > now - self.window_s]
        if times:
            self._fails[key] = times
        else:
            self._fails.pop(key, None)
        return times

    def retry_after(self, *keys: str) -> float:
        """Seconds until another attempt is allowed for all ``keys`` (0: allowed now)."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if len(times) >= self.max_failures:
                    wait = max(wait, times[-self.max_failures] + self.window_s - now)
        return wait

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._fails) > 100_000:  # bound memory under a spray of addresses
                self._fails.clear()
            for key in keys:
                self._fails.setdefault(key, []).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._fails.pop(key, None)
