"""Plain ASGI helpers for the mounted apps: the ASGI types, an app that answers every request
with one error (:func:`unavailable_app`), and :func:`lazy_asgi`, an app built on its first
request (so importing or starting the service builds nothing it does not need).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Awaitable, Callable, MutableMapping

log = logging.getLogger(__name__)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# --------------------------------------------------------------------------------------
# Lazily built ASGI apps
# --------------------------------------------------------------------------------------

async def _lifespan(receive: Receive, send: Send) -> None:
    """Answer ASGI lifespan events (nothing to start: the app is built on first request)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def unavailable_app(message: str, status: int = 503) -> ASGIApp:
    """An ASGI app answering every HTTP request with ``status`` and ``{"error": message}``."""
    body = json.dumps({"error": message}).encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: refuse the handshake
            await send({"type": "websocket.close", "code": 1013})
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"retry-after", b"60")]})
        await send({"type": "http.response.body", "body": body})

    app.message = message  # type: ignore[attr-defined]  # for tests and logs
    return app


class LazyASGI:
    """ASGI callable that builds ``factory()`` on its first request (see :func:`lazy_asgi`)."""

    def __init__(self, factory: Callable[[], ASGIApp], *, name: str = "app",
                 retry_after_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.factory = factory
        self.name = name
        self.retry_after_s = float(retry_after_s)
        self.clock = clock
        self._app: ASGIApp | None = None
        self._failed: tuple[float, ASGIApp] | None = None  # (retry at, 503 app)
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        """Whether the real app has been built."""
        return self._app is not None

    def get(self) -> ASGIApp:
        """The app, building it now if needed (blocking; thread-safe)."""
        app = self._app
        if app is not None:
            return app
        with self._lock:
            if self._app is not None:
                return self._app
            if self._failed is not None and self.clock() < self._failed[0]:
                return self._failed[1]
            try:
                self._app = self.factory()
            except Exception as exc:
                log.exception("%s: could not be built", self.name)
                msg = f"{self.name} is unavailable: {type(exc).__name__}: {exc}"
                self._failed = (self.clock() + self.retry_after_s, unavailable_app(msg))
                return self._failed[1]
            self._failed = None
            log.info("%s: built", self.name)
            return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        app = self._app
        if app is None:
            import anyio.to_thread

            # Building opens a database, reads config and templates: keep it off the loop.
            app = await anyio.to_thread.run_sync(self.get)
        await app(scope, receive, send)


def lazy_asgi(factory: Callable[[], ASGIApp], *, name: str = "app",
              retry_after_s: float = 30.0) -> LazyASGI:
    """An ASGI app that calls ``factory()`` on its first request and then delegates to it.

    Nothing is built at import or mount time. Concurrent first requests build it once. If the
    factory raises, that request and those in the next ``retry_after_s`` seconds get a 503
    JSON ``{"error": "<name> is unavailable: <why>"}``; the next one after that retries.
    """
    return LazyASGI(factory, name=name, retry_after_s=retry_after_s)
