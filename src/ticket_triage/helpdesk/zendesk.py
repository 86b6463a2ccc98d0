"""Zendesk: signed webhooks and cursor-based incremental export in; tags + internal note out.

* Webhooks: ``X-Zendesk-Webhook-Signature`` must equal
  ``base64(HMAC-SHA256(secret, X-Zendesk-Webhook-Signature-Timestamp + raw body))``.
  Accepted payloads: Zendesk event webhooks (``{"type": "zen:event-type:ticket.created",
  "id": <event id>, "detail": {id, subject, description, tags, updated_at, ...}}``) and
  trigger webhooks with a JSON body such as
  ``{"ticket": {"id": "{{ticket.id}}", "subject": ..., "description": ..., "tags": ...,
  "updated_at": ...}, "event": "created"}``.
* Polling: ``GET /api/v2/incremental/tickets/cursor.json`` (``start_time`` first, then the
  stored ``after_cursor``).
* Tickets in go through the ``zendesk`` export map (``ticket_triage.ingest.vendors``): the same
  fields, tag splitting and priority -> urgency as an ingested Zendesk export.
* Writes: ``PUT /api/v2/tickets/{id}/tags.json`` *adds* tags (agents' tags are kept);
  ``PUT /api/v2/tickets/{id}.json`` with ``{"ticket": {"comment": {"body", "public": false}}}``
  adds the internal note; routing sets ``group_id`` / ``assignee_id`` the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from datetime import datetime
from typing import Any, Mapping

from ticket_triage.helpdesk.base import HelpdeskAdapter, Incoming, SignatureError
from ticket_triage.helpdesk.outbox import PermanentError
from ticket_triage.ingest.vendors import zendesk_tags, zendesk_ticket

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature Zendesk sends for ``body`` at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def verify_signature(secret: str, signature: str | None, timestamp: str | None, body: bytes,
                     *, max_skew_s: float | None = None, now: float | None = None) -> None:
    """Raise :class:`SignatureError` unless the delivery is signed with ``secret``."""
    if not secret:
        raise SignatureError("no webhook secret configured; set the variable named by "
                             "helpdesk.webhook_secret_env to the webhook's signing secret")
    if not signature or not timestamp:
        raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip()):
        raise SignatureError("webhook signature does not match the body")
    if max_skew_s is not None:
        try:
            ts = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
        except ValueError as exc:
            raise SignatureError(f"unreadable {TIMESTAMP_HEADER}: {timestamp!r}") from exc
        if abs((time.time() if now is None else now) - ts) > max_skew_s:
            raise SignatureError("webhook timestamp is too old (possible replay)")


class ZendeskAdapter(HelpdeskAdapter):
    """Zendesk Support (API v2)."""

    name = "zendesk"

    def _auth(self) -> Any:
        email = os.environ.get(self.cfg.email_env or "", "")
        token = os.environ.get(self.cfg.api_token_env or "", "")
        return (f"{email}/token", token) if email and token else None

    # ---- in ------------------------------------------------------------------------------
    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        lower = {k.lower(): v for k, v in headers.items()}
        secret = os.environ.get(self.cfg.webhook_secret_env or "", "")
        verify_signature(secret, lower.get(SIGNATURE_HEADER.lower()),
                         lower.get(TIMESTAMP_HEADER.lower()), body,
                         max_skew_s=self.cfg.webhook_max_skew_s)

    def parse_webhook(self, body: bytes) -> list[Incoming]:
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise ValueError(f"zendesk webhook body is not JSON: {exc}") from exc
        items = payload if isinstance(payload, list) else [payload]
        out = []
        for p in items:
            if not isinstance(p, dict):
                raise ValueError("zendesk webhook: expected a JSON object per event")
            etype = str(p.get("type") or "")
            if etype.startswith("zen:event-type:ticket.") and isinstance(p.get("detail"), dict):
                detail = p["detail"]
                tags = zendesk_tags(detail.get("tags"))
                event = p.get("event") or {}
                if not tags and isinstance(event, dict) and "tags_added" in event:
                    tags = zendesk_tags(event.get("tags_added"))
                actor = detail.get("actor_id")
                out.append(Incoming(zendesk_ticket(detail), tags,
                                    version=str(p.get("id") or detail.get("updated_at")),
                                    is_new=etype.endswith("ticket.created"),
                                    actor=str(actor) if actor else None))
            elif isinstance(p.get("ticket"), dict):
                t = p["ticket"]
                ev = str(p.get("event") or "")
                out.append(Incoming(zendesk_ticket(t), zendesk_tags(t.get("tags")),
                                    version=str(p.get("event_id") or t.get("updated_at") or ""),
                                    is_new=True if ev in ("created", "ticket.created") else
                                    (False if ev in ("updated", "ticket.updated") else None),
                                    actor=str(p["actor_id"]) if p.get("actor_id") else None))
            else:
                raise ValueError("zendesk webhook: payload has neither an event 'detail' nor a "
                                 "'ticket' object; see ticket_triage.helpdesk.zendesk docs")
            if not out[-1].version or out[-1].version == "None":
                raise ValueError("zendesk webhook: no event id or updated_at to deduplicate on; "
                                 "include {{ticket.updated_at_with_timestamp}} as updated_at")
        return out

    def poll(self) -> tuple[list[Incoming], dict[str, str]]:
        cursor = self.get_state("cursor")
        out: list[Incoming] = []
        for _ in range(self.cfg.poll_max_pages):
            params = {"cursor": cursor} if cursor else {"start_time": int(self.cfg.poll_start_time)}
            page = self.request("GET", "/api/v2/incremental/tickets/cursor.json", params=params)
            for t in page.get("tickets") or []:
                if t.get("status") == "deleted":
                    continue
                out.append(Incoming(zendesk_ticket(t), zendesk_tags(t.get("tags")),
                                    version=str(t.get("updated_at") or ""), is_new=None))
            cursor = page.get("after_cursor") or cursor
            if page.get("end_of_stream", True):
                break
        return out, ({"cursor": cursor} if cursor else {})

    # ---- out -----------------------------------------------------------------------------
    def perform(self, op: dict[str, Any]) -> None:
        tid = op["ticket_id"]
        kind = op["op"]
        if kind == "add_tags":
            self.request("PUT", f"/api/v2/tickets/{tid}/tags.json", json_body={"tags": op["tags"]})
        elif kind == "add_note":
            self.request("PUT", f"/api/v2/tickets/{tid}.json", json_body={
                "ticket": {"comment": {"body": op["body"], "public": False}}})
        elif kind == "route":
            fields = {k: op[k] for k in ("group_id", "assignee_id") if op.get(k) is not None}
            if not fields:
                raise PermanentError(f"route op for ticket {tid} has no group_id/assignee_id")
            self.request("PUT", f"/api/v2/tickets/{tid}.json", json_body={"ticket": fields})
        else:
            raise PermanentError(f"zendesk: unknown outbox op {kind!r}")
