"""Zendesk: signed webhooks and cursor-based incremental export in; tags + internal note out.

* Webhooks: ``X-Zendesk-Webhook-Signature`` must equal
  ``base64(HMAC-SHA256(secret, X-Zendesk-Webhook-Signature-Timestamp + raw body))``.
  Accepted payloads: Zendesk event webhooks (``{"type": "zen:event-type:ticket.created",
  "id": <event id>, "detail": {id, subject, description, tags, updated_at, ...}}``) and
  trigger webhooks with a JSON body such as
  ``{"ticket": {"id": "{{ticket.id}}", "subject": ..., "description": ..., "tags": ...,
  "updated_at": ...}, "event": "created"}``.
* Polling: ``GET /api/v2/incremental/tickets/cursor.json`` (``start_time`` first, then the
  stored ``after_cursor``); ``closed`` / ``deleted`` tickets are skipped with that reason.
* Tickets in go through the ``zendesk`` export map (``ticket_triage.ingest.vendors``): the same
  fields, tag splitting and priority -> urgency as an ingested Zendesk export.
* Topic dropdown (``helpdesk.topic_field_id``): the draft also sets that custom field to
  ``<topic_field_prefix><topic>``; an agent changing it is read back as a correction.
* Writes: ``PUT /api/v2/tickets/{id}/tags.json`` *adds* tags (agents' tags are kept);
  ``PUT /api/v2/tickets/{id}.json`` with ``{"ticket": {"comment": {"body", "public": false}}}``
  adds the internal note; routing sets ``group_id`` / ``assignee_id`` the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
from datetime import datetime, timezone
from typing import Any, Mapping

from ticket_triage.helpdesk.base import (DEFAULT_REPLAY_WINDOW_S, HelpdeskAdapter, Incoming,
                                         PayloadError, SignatureError, check_timestamp)
from ticket_triage.helpdesk.outbox import PermanentError, SkippedError
from ticket_triage.helpdesk.webhooks import limit_events, load_payload
from ticket_triage.ingest.vendors import zendesk_tags, zendesk_ticket
from ticket_triage.schema import Ticket

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature Zendesk sends for ``body`` at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def parse_timestamp(raw: str | None) -> float | None:
    """Seconds since the epoch of Zendesk's ISO 8601 signature timestamp, None if unreadable."""
    if not raw or not isinstance(raw, str) or len(raw) > 40:
        return None
    try:
        dt = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def verify_signature(secret: str, signature: str | None, timestamp: str | None, body: bytes,
                     *, max_skew_s: float | None = DEFAULT_REPLAY_WINDOW_S,
                     now: float | None = None) -> None:
    """Raise :class:`SignatureError` unless the delivery is signed with ``secret`` and its
    timestamp is readable and inside the replay window."""
    if not secret:
        raise SignatureError("no webhook secret configured; set the variable named by "
                             "helpdesk.webhook_secret_env to the webhook's signing secret")
    if not signature or not timestamp:
        raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(),
                               signature.strip().encode("utf-8", "replace")):
        raise SignatureError("webhook signature does not match the body")
    check_timestamp(parse_timestamp(timestamp), timestamp, max_skew_s, what=TIMESTAMP_HEADER,
                    now=now)


def _tags(v: Any) -> list[str]:
    """Zendesk tags (a list of strings, or one space-separated string from a placeholder),
    split by the ``zendesk`` export map; any other type is a malformed payload."""
    if v is not None and not isinstance(v, str) and not (
            isinstance(v, list) and all(isinstance(t, (str, int)) and not isinstance(t, bool)
                                        for t in v)):
        raise PayloadError(f"zendesk: tags must be a list of strings, got {type(v).__name__}")
    return zendesk_tags(v)


def _check_text(t: Mapping[str, Any]) -> None:
    for field in ("subject", "raw_subject", "description"):
        v = t.get(field)
        if v is not None and not (isinstance(v, (str, int, float)) and not isinstance(v, bool)):
            raise PayloadError(f"zendesk: ticket {field} must be a string, got {type(v).__name__}")


def ticket_from_zendesk(t: Mapping[str, Any], tid: str) -> Ticket:
    """A Zendesk ticket JSON (API or webhook detail) -> canonical :class:`Ticket` through the
    ``zendesk`` export map (:func:`ticket_triage.ingest.vendors.zendesk_ticket`)."""
    _check_text(t)
    _tags(t.get("tags"))
    try:
        return zendesk_ticket({**t, "id": tid})
    except ValueError as exc:
        raise PayloadError(str(exc)) from exc


CLOSED_STATUSES = {"closed": "closed (Zendesk refuses updates to closed tickets)",
                   "deleted": "deleted"}


class ZendeskAdapter(HelpdeskAdapter):
    """Zendesk Support (API v2)."""

    name = "zendesk"
    id_pattern = re.compile(r"[1-9][0-9]{0,18}")
    id_example = "12345"

    def _auth(self) -> Any:
        email = os.environ.get(self.cfg.email_env or "", "")
        token = os.environ.get(self.cfg.api_token_env or "", "")
        return (f"{email}/token", token) if email and token else None

    # ---- in ------------------------------------------------------------------------------
    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        lower = {k.lower(): v for k, v in headers.items()}
        verify_signature(self.webhook_secret(), lower.get(SIGNATURE_HEADER.lower()),
                         lower.get(TIMESTAMP_HEADER.lower()), body,
                         max_skew_s=self.cfg.webhook_max_skew_s)

    def _incoming(self, t: Mapping[str, Any], *, version: Any, is_new: bool | None,
                  actor: Any = None, tags: list[str] | None = None) -> Incoming:
        tid = self.validate_id(t.get("id"))
        ticket = ticket_from_zendesk(t, tid)
        status = t.get("status")
        skip = CLOSED_STATUSES.get(status) if isinstance(status, str) else None
        return Incoming(ticket, ticket.tags if tags is None else tags,
                        version=str(version) if version not in (None, "") else "",
                        is_new=is_new, actor=str(actor) if actor not in (None, "") else None,
                        skip_reason=skip, topic_value=self._field_topic(t))

    def _field_topic(self, t: Mapping[str, Any]) -> str | None:
        """The topic our custom dropdown holds (``helpdesk.topic_field_id``), if any."""
        fid = self.cfg.topic_field_id
        fields = t.get("custom_fields")
        if fid is None or not isinstance(fields, list):
            return None
        for f in fields:
            if isinstance(f, dict) and str(f.get("id")) == str(fid):
                v = f.get("value")
                p = self.cfg.topic_field_prefix or ""
                if isinstance(v, str) and v.startswith(p) and len(v) > len(p):
                    return v[len(p):]
        return None

    def parse_webhook(self, body: bytes) -> list[Incoming]:
        payload = load_payload(body, vendor="zendesk")
        items = payload if isinstance(payload, list) else [payload]
        limit_events(items, self.cfg.webhook_max_events, "zendesk")
        out = []
        for p in items:
            if not isinstance(p, dict):
                raise PayloadError("zendesk webhook: expected a JSON object per event")
            etype = p.get("type")
            etype = etype if isinstance(etype, str) else ""
            if etype.startswith("zen:event-type:ticket.") and isinstance(p.get("detail"), dict):
                detail = p["detail"]
                tags = _tags(detail.get("tags"))
                event = p.get("event") or {}
                if not tags and isinstance(event, dict) and "tags_added" in event:
                    tags = _tags(event.get("tags_added"))
                inc = self._incoming(detail, version=p.get("id") or detail.get("updated_at"),
                                     is_new=etype.endswith("ticket.created"),
                                     actor=detail.get("actor_id"), tags=tags)
            elif isinstance(p.get("ticket"), dict):
                t = p["ticket"]
                ev = str(p.get("event") or "")
                inc = self._incoming(t, version=p.get("event_id") or t.get("updated_at"),
                                     is_new=True if ev in ("created", "ticket.created") else
                                     (False if ev in ("updated", "ticket.updated") else None),
                                     actor=p.get("actor_id"))
            else:
                raise PayloadError("zendesk webhook: payload has neither an event 'detail' nor a "
                                   "'ticket' object; see the README (Zendesk) for the trigger body")
            if not inc.version or len(inc.version) > 200:
                raise PayloadError("zendesk webhook: no event id or updated_at to deduplicate on; "
                                   "include {{ticket.updated_at_with_timestamp}} as updated_at")
            out.append(inc)
        return out

    def poll(self) -> tuple[list[Incoming], dict[str, str]]:
        cursor = self.get_state("cursor")
        out: list[Incoming] = []
        for _ in range(self.cfg.poll_max_pages):
            params = {"cursor": cursor} if cursor else {"start_time": int(self.cfg.poll_start_time)}
            page = self.request("GET", "/api/v2/incremental/tickets/cursor.json", params=params)
            if not isinstance(page, dict):
                raise PermanentError(f"zendesk incremental export answered {str(page)[:200]!r}")
            for t in page.get("tickets") or []:
                try:
                    out.append(self._incoming(t, version=t.get("updated_at") or "", is_new=None))
                except PayloadError as exc:
                    log.warning("zendesk: ticket skipped from the export: %s", exc)
                    self.bad_items.append(str(exc))
            cursor = page.get("after_cursor") or cursor
            self.progress(f"zendesk: export page read, {len(out)} ticket(s) so far")
            if page.get("end_of_stream", True):
                break
        return out, ({"cursor": cursor} if cursor else {})

    # ---- out -----------------------------------------------------------------------------
    def extra_ops(self, ticket_id: str, d: Any) -> list[dict[str, Any]]:
        if self.cfg.topic_field_id is None or not d.topic:
            return []
        return [{"op": "set_field", "ticket_id": ticket_id, "field_id": self.cfg.topic_field_id,
                 "value": f"{self.cfg.topic_field_prefix or ''}{d.topic}"}]

    def _note_exists(self, tid: str, ref: str) -> bool:
        """Whether a private note carrying ``ref`` is on the ticket (a retry after a crash)."""
        path: str | None = f"/api/v2/tickets/{tid}/comments.json"
        for _ in range(20):
            if not path:
                return False
            page = self.request("GET", path) or {}
            for c in page.get("comments") or []:
                if ref in str(c.get("body") or ""):
                    return True
            path = self.relative(page.get("next_page"))
        return False

    def _put(self, path: str, body: Any) -> None:
        try:
            self.request("PUT", path, json_body=body)
        except PermanentError as exc:
            if exc.status == 422 and "closed" in str(exc).lower():
                raise SkippedError(f"ticket is closed; Zendesk refuses updates ({exc})") from exc
            raise

    def perform(self, op: dict[str, Any]) -> None:
        tid = self.path_id(op["ticket_id"])
        kind = op["op"]
        if kind == "add_tags":
            self._put(f"/api/v2/tickets/{tid}/tags.json", {"tags": op["tags"]})
        elif kind == "add_note":
            if op.get("ref") and op.get("_attempt", 1) > 1 and self._note_exists(tid, op["ref"]):
                return  # an earlier attempt landed before we could record it
            self._put(f"/api/v2/tickets/{tid}.json", {
                "ticket": {"comment": {"body": op["body"], "public": False}}})
        elif kind == "set_field":
            self._put(f"/api/v2/tickets/{tid}.json", {"ticket": {"custom_fields": [
                {"id": op["field_id"], "value": op["value"]}]}})
        elif kind == "route":
            fields = {k: op[k] for k in ("group_id", "assignee_id") if op.get(k) is not None}
            if not fields:
                raise PermanentError(f"route op for ticket {tid} has no group_id/assignee_id")
            self._put(f"/api/v2/tickets/{tid}.json", {"ticket": fields})
        else:
            raise PermanentError(f"zendesk: unknown outbox op {kind!r}")
