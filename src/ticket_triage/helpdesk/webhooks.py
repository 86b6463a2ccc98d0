"""An ASGI app that receives helpdesk webhooks: ``POST /<adapter name>`` (``/zendesk``,
``/intercom``, ``/front``), and the guards every delivery passes first.

Answers (never a 500 for what a sender did):

* 413 -- body larger than ``max_body_bytes``;
* 401 -- signature missing or wrong, or the signed timestamp unreadable or outside the replay
  window (``helpdesk.webhook_max_skew_s``, 300 s by default); the JSON ``error`` says which;
* 400 -- signed but malformed: not JSON, nested deeper than :data:`MAX_DEPTH`, more than
  ``helpdesk.webhook_max_events`` events, no or an invalid ticket id, fields of the wrong type;
* 200 -- handled: classified and drafted into the outbox *before* the answer, so a delivery
  the helpdesk sees as accepted is never lost (the outbox worker is then woken);
* 503 -- we could not handle it now (database, model); the helpdesk retries later.

Front's subscription handshake (``X-Front-Challenge``) is answered with the challenge after
the signature check.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Mapping

from ticket_triage.helpdesk.base import HelpdeskAdapter, PayloadError, SignatureError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ticket_triage.helpdesk.outbox import OutboxWorker

log = logging.getLogger(__name__)

MAX_DEPTH = 32
MAX_BODY_BYTES = 1_000_000


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value (iterative; stops counting past ``limit``)."""
    deepest = 0
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return deepest


def load_payload(body: bytes, *, vendor: str, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON of a webhook body, or :class:`PayloadError` saying why it cannot be read."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{vendor} webhook body is not UTF-8: {exc.reason}") from exc
    try:
        payload = json.loads(text)
    except RecursionError as exc:
        raise PayloadError(f"{vendor} webhook body is nested too deeply (at most {max_depth} "
                           "levels)") from exc
    except ValueError as exc:
        raise PayloadError(f"{vendor} webhook body is not JSON: {exc}") from exc
    if _depth(payload, max_depth) > max_depth:
        raise PayloadError(f"{vendor} webhook body is nested more than {max_depth} levels deep")
    return payload


def limit_events(items: list[Any], max_events: int, vendor: str) -> list[Any]:
    if len(items) > max_events:
        raise PayloadError(f"{vendor} webhook carries {len(items)} events; at most {max_events} "
                           "per delivery (helpdesk.webhook_max_events)")
    return items


def create_webhook_app(adapters: Mapping[str, HelpdeskAdapter], *,
                       worker: "OutboxWorker | None" = None,
                       drain_inline: bool = False,
                       max_body_bytes: int = MAX_BODY_BYTES,
                       unavailable: Mapping[str, str] | None = None) -> "Starlette":
    """Routes ``POST /{name}`` to ``adapters[name]``; wakes ``worker`` (or drains inline).
    ``unavailable``: configured helpdesks that cannot take webhooks now -> 503 + why."""
    unavailable = dict(unavailable or {})
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def receive(request: Request) -> Any:
        name = request.path_params["name"]
        adapter = adapters.get(name)
        if adapter is None and name in unavailable:
            return JSONResponse({"error": unavailable[name]}, status_code=503,
                                headers={"Retry-After": "60"})
        if adapter is None:
            return JSONResponse({"error": f"no helpdesk adapter {name!r}; configured: "
                                          f"{sorted(adapters)}"}, status_code=404)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            return JSONResponse({"error": f"body of {declared} bytes; at most {max_body_bytes}"},
                                status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return JSONResponse({"error": f"body larger than {max_body_bytes} bytes"},
                                    status_code=413)
        try:
            adapter.verify_webhook(request.headers, body)
        except SignatureError as exc:
            log.warning("%s webhook rejected: %s", name, exc)
            return JSONResponse({"error": f"refused: {exc}"}, status_code=401)
        try:
            challenge = adapter.webhook_challenge(request.headers, body)
            if challenge is not None:
                return PlainTextResponse(str(challenge))
            incoming = adapter.parse_webhook(body)
        except (PayloadError, ValueError, TypeError, KeyError, AttributeError,
                RecursionError) as exc:
            msg = str(exc) if isinstance(exc, ValueError) else \
                f"{name} webhook payload is malformed ({type(exc).__name__}: {str(exc)[:200]})"
            log.warning("%s webhook: 400: %s", name, msg)
            return JSONResponse({"error": msg}, status_code=400)
        try:
            rep = await run_in_threadpool(adapter.handle, incoming)
        except Exception as exc:  # our side failed: the helpdesk keeps the event and retries
            log.exception("%s webhook: could not handle %d event(s)", name, len(incoming))
            return JSONResponse({"error": f"could not handle the delivery now "
                                          f"({type(exc).__name__}); retry later"},
                                status_code=503, headers={"Retry-After": "60"})
        if worker is not None:
            worker.wake()
        elif drain_inline:
            await run_in_threadpool(adapter.drain_outbox)
        return JSONResponse({"received": rep.received, "duplicates": rep.duplicates,
                             "drafted": rep.drafted, "feedback": rep.feedback,
                             "skipped": rep.skipped_reasons})

    return Starlette(routes=[Route("/{name}", receive, methods=["POST"])])
