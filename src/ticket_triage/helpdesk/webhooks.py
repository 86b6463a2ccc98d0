"""An ASGI app that receives helpdesk webhooks: ``POST /<adapter name>`` (e.g. ``/zendesk``).

Bad signatures get 401, unreadable bodies 400. Accepted deliveries are handled (classified,
drafted into the outbox) before the 200 answer, so a delivery Zendesk sees as accepted is
never lost; the outbox worker is then woken to deliver the draft.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from ticket_triage.helpdesk.base import HelpdeskAdapter, SignatureError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ticket_triage.helpdesk.outbox import OutboxWorker

log = logging.getLogger(__name__)


def create_webhook_app(adapters: Mapping[str, HelpdeskAdapter], *,
                       worker: "OutboxWorker | None" = None,
                       drain_inline: bool = False) -> "Starlette":
    """Routes ``POST /{name}`` to ``adapters[name]``; wakes ``worker`` (or drains inline)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def receive(request: Request) -> Any:
        name = request.path_params["name"]
        adapter = adapters.get(name)
        if adapter is None:
            return JSONResponse({"error": f"no helpdesk adapter {name!r}"}, status_code=404)
        body = await request.body()
        try:
            adapter.verify_webhook(request.headers, body)
        except SignatureError as exc:
            log.warning("%s webhook rejected: %s", name, exc)
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        try:
            incoming = adapter.parse_webhook(body)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        rep = await run_in_threadpool(adapter.handle, incoming)
        if worker is not None:
            worker.wake()
        elif drain_inline:
            await run_in_threadpool(adapter.drain_outbox)
        return JSONResponse({"received": rep.received, "duplicates": rep.duplicates,
                             "drafted": rep.drafted, "feedback": rep.feedback})

    return Starlette(routes=[Route("/{name}", receive, methods=["POST"])])
