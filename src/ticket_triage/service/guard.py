"""Who may call the classify API, with what, and how much review work one caller may create.

:class:`ApiGuard` (ASGI middleware in front of the BentoML service):

* **API key** (optional): ``$TRIAGE_API_KEYS`` holds one or more keys (comma-separated). When
  set, ``POST /classify`` and ``/classify_batch`` need ``Authorization: Bearer <key>`` (or
  ``X-API-Key: <key>``), else 401. When NOT set, the API answers loopback clients only (403 for
  any other address): a service that listens beyond loopback must have a key.
* **JSON only**: those endpoints refuse any body that is not ``application/json`` with 415, so a
  cross-origin page cannot POST ``text/plain`` without a CORS preflight.
* It tells the service who called: ``x-triage-client`` (``key:<hash prefix>`` or
  ``ip:<address>``) and ``x-triage-auth`` (``1`` with a valid key); both are overwritten, never
  taken from the request. ``/info/ready`` shows its details (bundle path, LLM endpoint,
  counters) only when ``x-triage-auth`` is ``1``.

:class:`ReviewQuota`: a token bucket per caller for review items created through the API
(``review.max_items_per_client_per_minute``); an exhausted caller gets 429 with the wait, before
any work, so nothing it was told is queued is ever dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import threading
import time
from typing import Any, Awaitable, Callable, Mapping, MutableMapping

__all__ = ["ENV_API_KEYS", "GUARDED_PATHS", "ApiGuard", "ReviewQuota", "client_of", "is_loopback"]

ENV_API_KEYS = "TRIAGE_API_KEYS"
GUARDED_PATHS = ("/classify", "/classify_batch")
DETAIL_PATHS = ("/info/ready",)

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_keys(env: Mapping[str, str] | None = None) -> list[str]:
    """SHA-256 digests of the keys in ``$TRIAGE_API_KEYS`` (empty list: no key configured)."""
    raw = (os.environ if env is None else env).get(ENV_API_KEYS, "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    short = [k for k in keys if len(k) < 16]
    if short:
        raise ValueError(f"${ENV_API_KEYS}: {len(short)} key(s) shorter than 16 characters; use long "
                         "random keys (python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return [_digest(k) for k in keys]


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host in ("localhost", "testclient"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def client_of(headers: Mapping[str, str]) -> str:
    """The caller identity the guard stamped on the request (``ip:?`` when none)."""
    return headers.get("x-triage-client") or "ip:?"


class ApiGuard:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, keys: list[str] | None = None) -> None:
        self.app = app
        self.keys = load_keys() if keys is None else list(keys)

    def _valid(self, presented: str) -> str | None:
        d = _digest(presented)
        ok = None
        for k in self.keys:  # compare with every key: time does not reveal which one matched
            if hmac.compare_digest(d, k):
                ok = k
        return ok

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers") or []
                   if k not in (b"x-triage-client", b"x-triage-auth")]
        presented = None
        ctype = b""
        for k, v in headers:
            if k == b"authorization" and v[:7].lower() == b"bearer ":
                presented = v[7:].decode("latin-1").strip()
            elif k == b"x-api-key":
                presented = v.decode("latin-1").strip()
            elif k == b"content-type":
                ctype = v.split(b";", 1)[0].strip().lower()
        path = (scope.get("path") or "").rstrip("/") or "/"
        guarded = path in GUARDED_PATHS
        client = (scope.get("client") or ("", 0))[0]
        digest = self._valid(presented) if presented and self.keys else None
        if guarded or path in DETAIL_PATHS:
            if presented is not None and self.keys and digest is None:
                await _refuse(send, 401, "invalid API key", {"www-authenticate": "Bearer"})
                return
        if guarded:
            if self.keys and digest is None:
                await _refuse(send, 401, "API key required: send 'Authorization: Bearer <key>' "
                              "(or 'X-API-Key: <key>')", {"www-authenticate": "Bearer"})
                return
            if not self.keys and not is_loopback(client):
                await _refuse(send, 403, f"this service has no API key configured and answers "
                              f"loopback clients only; set {ENV_API_KEYS} on the server to serve "
                              "other hosts, then send the key as 'Authorization: Bearer <key>'")
                return
            if scope.get("method") == "POST" and not (ctype == b"application/json"
                                                      or ctype.endswith(b"+json")):
                await _refuse(send, 415, f"Content-Type must be application/json (got "
                              f"{ctype.decode('latin-1') or 'none'!r}); send the ticket as JSON")
                return
        who = f"key:{digest[:12]}" if digest else f"ip:{client or '?'}"
        headers += [(b"x-triage-client", who.encode()), (b"x-triage-auth", b"1" if digest else b"0")]
        await self.app({**scope, "headers": headers}, receive, send)


async def _refuse(send: Any, status: int, message: str, extra: Mapping[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ReviewQuota:
    """Token bucket per caller: ``per_minute`` review items, refilled continuously. ``wait``
    says how long a caller must wait (0: go on); ``spend`` takes what a request queued (the
    bucket may go below zero: the items are queued, the caller waits longer next time)."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = float(per_minute)
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)

    def _tokens(self, client: str, now: float) -> float:
        tokens, at = self._buckets.get(client, (self.per_minute, now))
        return min(self.per_minute, tokens + (now - at) * self.per_minute / 60.0)

    def wait(self, client: str) -> float:
        if self.per_minute <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens = self._tokens(client, now)
        return 0.0 if tokens >= 1 else (1 - tokens) * 60.0 / self.per_minute

    def spend(self, client: str, n: int) -> None:
        if self.per_minute <= 0 or n <= 0:
            return
        now = self.clock()
        with self._lock:
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            self._buckets[client] = (self._tokens(client, now) - n, now)
