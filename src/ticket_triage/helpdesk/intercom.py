"""Intercom: conversations polled through the search API or pushed by signed webhooks; tags
and an admin note out.

* Polling: ``POST /conversations/search`` with ``updated_at > <stored time - 1 s>`` (pages via
  ``pages.next.starting_after``; the one-second overlap is deduplicated by version).
* Webhooks: ``X-Hub-Signature: sha1=<hex HMAC-SHA1 of the raw body with the app's client
  secret>``; the body is a ``notification_event`` whose ``data.item`` is the conversation.
  Intercom sends no timestamp header, so the replay window uses the signed ``created_at``.
  Topic ``ping`` (sent when the webhook is saved) is answered without handling.
* Tags are referenced by id: ``POST /tags {"name"}`` creates-or-returns the tag by name (its id
  is cached in the state table), then ``POST /conversations/{id}/tags {"id", "admin_id"}``.
* Note: ``POST /conversations/{id}/reply`` with ``message_type: note``; a retried note is first
  looked for in ``GET /conversations/{id}`` (``conversation_parts``) by its reference.
* Routing: ``POST /conversations/{id}/parts`` with ``message_type: assignment``.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import os
import re
from typing import Any, Mapping

from ticket_triage.helpdesk.base import (HelpdeskAdapter, Incoming, PayloadError, SignatureError,
                                         check_timestamp)
from ticket_triage.helpdesk.outbox import PermanentError
from ticket_triage.helpdesk.webhooks import limit_events, load_payload
from ticket_triage.schema import Ticket

log = logging.getLogger(__name__)

_TAGS_RE = re.compile(r"<[^>]+>")
SIGNATURE_HEADER = "X-Hub-Signature"


def _plain(s: Any) -> str:
    return html.unescape(_TAGS_RE.sub(" ", str(s or ""))).strip()


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` value Intercom sends for ``body``."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def _str(v: Any, what: str) -> str:
    if v is None:
        return ""
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    raise PayloadError(f"intercom: {what} must be a string, got {type(v).__name__}")


class IntercomAdapter(HelpdeskAdapter):
    name = "intercom"
    api_version = "2.11"
    id_pattern = re.compile(r"[0-9]{1,24}")
    id_example = "123456789"

    def _headers(self) -> dict[str, str]:
        token = os.environ.get(self.cfg.api_token_env or "", "")
        h = {"Intercom-Version": self.api_version, "Accept": "application/json"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    def _admin(self) -> str:
        if not self.cfg.admin_id:
            raise PermanentError("intercom: helpdesk.admin_id is not set; Intercom needs the "
                                 "admin that writes notes and tags")
        return str(self.cfg.admin_id)

    # ---- in ------------------------------------------------------------------------------
    def incoming(self, c: Mapping[str, Any], *, version: Any = None,
                 is_new: bool | None = None) -> Incoming:
        """One Intercom conversation object -> :class:`Incoming`."""
        if not isinstance(c, Mapping):
            raise PayloadError("intercom: conversation must be an object")
        cid = self.validate_id(c.get("id"))
        src = c.get("source") or {}
        if not isinstance(src, Mapping):
            raise PayloadError("intercom: conversation source must be an object")
        tag_list = c.get("tags") or {}
        raw_tags = tag_list.get("tags") if isinstance(tag_list, Mapping) else tag_list
        if not isinstance(raw_tags, list):
            raise PayloadError("intercom: conversation tags must be a tag.list object")
        tags = [_str(t.get("name"), "tag name") if isinstance(t, Mapping) else _str(t, "tag")
                for t in raw_tags]
        upd = c.get("updated_at")
        if version is None:
            if not isinstance(upd, (int, float)) or isinstance(upd, bool):
                raise PayloadError("intercom: conversation updated_at must be a unix time")
            version = f"{int(upd)}:{','.join(sorted(tags))}"
        state = c.get("state")
        return Incoming(Ticket(id=cid, subject=_plain(_str(src.get("subject"), "subject")),
                               body=_plain(_str(src.get("body"), "body")), tags=tags,
                               source="intercom"),
                        tags, version=str(version), is_new=is_new,
                        skip_reason="closed" if state == "closed" else None)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        secret = self.webhook_secret()
        if not secret:
            raise SignatureError("no webhook secret configured; set the variable named by "
                                 "helpdesk.webhook_secret_env to the app's client secret")
        got = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE_HEADER.lower())
        if not got:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        if not hmac.compare_digest(sign(secret, body).encode(),
                                   got.strip().encode("utf-8", "replace")):
            raise SignatureError("webhook signature does not match the body")
        if self.cfg.webhook_max_skew_s is not None:  # Intercom signs created_at in the body
            try:
                payload = load_payload(body, vendor="intercom")
            except PayloadError:
                return  # answered 400 by parse_webhook
            ts = payload.get("created_at") if isinstance(payload, dict) else None
            ok = isinstance(ts, (int, float)) and not isinstance(ts, bool)
            check_timestamp(float(ts) if ok else None, ts, self.cfg.webhook_max_skew_s,
                            what="notification created_at")

    def webhook_challenge(self, headers: Mapping[str, str], body: bytes) -> Any:
        try:
            payload = load_payload(body, vendor="intercom")
        except PayloadError:
            return None
        if isinstance(payload, dict) and payload.get("topic") == "ping":
            return "pong"
        return None

    def parse_webhook(self, body: bytes) -> list[Incoming]:
        payload = load_payload(body, vendor="intercom")
        items = payload if isinstance(payload, list) else [payload]
        limit_events(items, self.cfg.webhook_max_events, "intercom")
        out = []
        for p in items:
            if not isinstance(p, dict) or p.get("type") != "notification_event":
                raise PayloadError("intercom webhook: expected a notification_event object")
            topic = p.get("topic")
            data = p.get("data")
            item = data.get("item") if isinstance(data, dict) else None
            if not isinstance(topic, str) or not isinstance(item, dict):
                raise PayloadError("intercom webhook: notification needs a topic and data.item")
            if not topic.startswith(("conversation.", "conversation_part.")):
                raise PayloadError(f"intercom webhook: topic {topic[:60]!r} is not a conversation "
                                   "topic; subscribe to conversation.user.created and "
                                   "conversation_part.tag.created")
            nid = p.get("id")
            if not isinstance(nid, str) or not nid or len(nid) > 200:
                raise PayloadError("intercom webhook: notification id missing")
            out.append(self.incoming(item, version=nid,
                                     is_new=True if topic == "conversation.user.created" else None))
        return out

    def poll(self) -> tuple[list[Incoming], dict[str, str]]:
        since = int(self.get_state("since") or self.cfg.poll_start_time)
        newest = since
        out: list[Incoming] = []
        after: str | None = None
        for page_no in range(self.cfg.poll_max_pages):
            body: dict[str, Any] = {"query": {"field": "updated_at", "operator": ">",
                                              "value": max(0, since - 1)},
                                    "pagination": {"per_page": 50}}
            if after:
                body["pagination"]["starting_after"] = after
            page = self.request("POST", "/conversations/search", json_body=body) or {}
            for c in page.get("conversations") or []:
                try:
                    inc = self.incoming(c)
                except PayloadError as exc:
                    log.warning("intercom: conversation skipped: %s", exc)
                    self.bad_items.append(str(exc))
                    continue
                newest = max(newest, int(c.get("updated_at") or 0))
                out.append(inc)
            self.progress(f"intercom: search page {page_no + 1}, {len(out)} conversation(s)")
            nxt = (page.get("pages") or {}).get("next")
            after = nxt.get("starting_after") if isinstance(nxt, dict) else None
            if not after:
                break
        return out, {"since": str(newest)}

    # ---- out -----------------------------------------------------------------------------
    def _note_exists(self, cid: str, ref: str) -> bool:
        conv = self.request("GET", f"/conversations/{cid}") or {}
        parts = (conv.get("conversation_parts") or {}).get("conversation_parts") or []
        return any(ref in str(p.get("body") or "") for p in parts if isinstance(p, dict))

    def perform(self, op: dict[str, Any]) -> None:
        cid, kind = self.path_id(op["ticket_id"]), op["op"]
        if kind == "add_tags":
            for name in op["tags"]:
                self.request("POST", f"/conversations/{cid}/tags",
                             json_body={"id": self._tag_id(name), "admin_id": self._admin()})
        elif kind == "add_note":
            if op.get("ref") and op.get("_attempt", 1) > 1 and self._note_exists(cid, op["ref"]):
                return
            body = "<p>" + "</p><p>".join(html.escape(x) for x in op["body"].split("\n")) + "</p>"
            self.request("POST", f"/conversations/{cid}/reply", json_body={
                "message_type": "note", "type": "admin", "admin_id": self._admin(), "body": body})
        elif kind == "route":
            assignee = op.get("assignee_id") or op.get("team_id")
            if not assignee:
                raise PermanentError(f"intercom route for {cid}: no assignee_id/team_id")
            self.request("POST", f"/conversations/{cid}/parts", json_body={
                "message_type": "assignment", "type": "admin", "admin_id": self._admin(),
                "assignee_id": str(assignee)})
        else:
            raise PermanentError(f"intercom: unknown outbox op {kind!r}")
