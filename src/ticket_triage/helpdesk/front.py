"""Front: conversations polled through search or pushed by signed application webhooks;
company tags and an internal comment out.

* Polling: ``GET /conversations/search/after:<unix time>`` from the start of the previous
  pass (minus a minute of overlap), pages via ``_pagination.next``. Front's conversation object
  has no ``updated_at``: a conversation's *version* is a hash of its status, its tags and its
  last message link, so an agent's tag change is a new version (read back as feedback) and an
  unchanged conversation is skipped as a duplicate.
* The ticket text is the customer's first message: ``GET /conversations/{id}/messages``
  (newest first) followed through every page, the earliest inbound message wins.
* Webhooks (application webhooks): ``X-Front-Signature`` = base64 HMAC-SHA256 of
  ``<X-Front-Request-Timestamp>:<raw body>`` with the app's signing secret; the timestamp (ms)
  must be inside the replay window. A delivery with ``X-Front-Challenge`` (sent when the
  webhook is saved) is answered with the challenge. Events: ``{"type", "authorization",
  "payload": {"id": "evt_...", "type": "inbound" | "tag" | ..., "conversation": {...},
  "target": {"data": <message or tag>}}}``.
* Tags are company tags found by name: ``GET /company/tags`` (paginated), created with
  ``POST /company/tags {"name"}`` only when missing; ids cached in the state table. Then
  ``POST /conversations/{id}/tags {"tag_ids": [...]}``.
* Note: ``POST /conversations/{id}/comments {"body", "author_id"?}`` (comments are internal); a
  retried comment is first looked for in ``GET /conversations/{id}/comments``.
* Routing: ``PUT /conversations/{id}/assignee {"assignee_id"}``.
* Rate limits: 429 with ``Retry-After`` pauses the adapter (see the outbox).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import time
from typing import Any, Mapping

from ticket_triage.helpdesk.base import (HelpdeskAdapter, Incoming, PayloadError, SignatureError,
                                         check_timestamp)
from ticket_triage.helpdesk.intercom import _plain
from ticket_triage.helpdesk.outbox import PermanentError, RetryableError
from ticket_triage.helpdesk.webhooks import limit_events, load_payload
from ticket_triage.schema import Ticket

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Front-Signature"
TIMESTAMP_HEADER = "X-Front-Request-Timestamp"
CHALLENGE_HEADER = "X-Front-Challenge"
SKIP_STATUSES = {"archived": "archived", "deleted": "deleted", "spam": "spam"}
POLL_OVERLAP_S = 60


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Front-Signature`` Front sends for ``body`` at ``timestamp`` (ms)."""
    mac = hmac.new(secret.encode(), f"{timestamp}:".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def _s(v: Any, what: str) -> str:
    if v is None:
        return ""
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    raise PayloadError(f"front: {what} must be a string, got {type(v).__name__}")


class FrontAdapter(HelpdeskAdapter):
    name = "front"
    id_pattern = re.compile(r"cnv_[0-9a-z]{1,40}")
    id_example = "cnv_55c8c149"

    def _headers(self) -> dict[str, str]:
        token = os.environ.get(self.cfg.api_token_env or "", "")
        h = {"Accept": "application/json"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    # ---- in ------------------------------------------------------------------------------
    @staticmethod
    def _tag_names(c: Mapping[str, Any]) -> list[str]:
        tags = c.get("tags") or []
        if not isinstance(tags, list):
            raise PayloadError("front: conversation tags must be a list")
        return [_s(t.get("name"), "tag name") if isinstance(t, Mapping) else _s(t, "tag")
                for t in tags]

    def version_of(self, c: Mapping[str, Any], tags: list[str]) -> str:
        """Front has no updated_at: status + tags + last message link identify a version."""
        last = ((c.get("_links") or {}).get("related") or {}).get("last_message") \
            if isinstance(c.get("_links"), Mapping) else None
        raw = f"{c.get('status')}|{','.join(sorted(tags))}|{last}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def incoming(self, c: Mapping[str, Any], *, subject: str = "", body: str = "",
                 version: str | None = None, is_new: bool | None = None) -> Incoming:
        if not isinstance(c, Mapping):
            raise PayloadError("front: conversation must be an object")
        cid = self.validate_id(c.get("id"))
        tags = self._tag_names(c)
        status = c.get("status")
        return Incoming(Ticket(id=cid, subject=_s(c.get("subject"), "subject") or subject,
                               body=body, tags=tags, source="front"),
                        tags, version=version or self.version_of(c, tags), is_new=is_new,
                        skip_reason=SKIP_STATUSES.get(status) if isinstance(status, str) else None)

    def first_message(self, cid: str) -> tuple[str, str]:
        """Subject and text of the customer's first message (all pages; newest come first)."""
        path: str | None = f"/conversations/{self.path_id(cid)}/messages?limit=100"
        first: dict[str, Any] | None = None
        for _ in range(50):
            if not path:
                break
            page = self.request("GET", path) or {}
            for m in page.get("_results") or []:
                if not isinstance(m, dict):
                    continue
                inbound = m.get("is_inbound", True)
                key = (0 if inbound else 1, float(m.get("created_at") or 0))
                if first is None or key < (0 if first.get("is_inbound", True) else 1,
                                           float(first.get("created_at") or 0)):
                    first = m
            path = self.relative((page.get("_pagination") or {}).get("next"))
        if first is None:
            return "", ""
        return (str(first.get("subject") or ""),
                str(first.get("text") or _plain(first.get("body")) or first.get("blurb") or ""))

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        secret = self.webhook_secret()
        if not secret:
            raise SignatureError("no webhook secret configured; set the variable named by "
                                 "helpdesk.webhook_secret_env to the app's signing secret")
        lower = {k.lower(): v for k, v in headers.items()}
        sig, ts = lower.get(SIGNATURE_HEADER.lower()), lower.get(TIMESTAMP_HEADER.lower())
        if not sig or not ts:
            raise SignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
        if not hmac.compare_digest(sign(secret, ts, body).encode(),
                                   sig.strip().encode("utf-8", "replace")):
            raise SignatureError("webhook signature does not match the body")
        try:
            when = int(ts.strip()) / 1000.0 if len(ts) <= 20 else None
        except ValueError:
            when = None
        check_timestamp(when, ts, self.cfg.webhook_max_skew_s, what=TIMESTAMP_HEADER)

    def webhook_challenge(self, headers: Mapping[str, str], body: bytes) -> Any:
        lower = {k.lower(): v for k, v in headers.items()}
        challenge = lower.get(CHALLENGE_HEADER.lower())
        if challenge:
            return challenge
        return None

    def parse_webhook(self, body: bytes) -> list[Incoming]:
        payload = load_payload(body, vendor="front")
        items = payload if isinstance(payload, list) else [payload]
        limit_events(items, self.cfg.webhook_max_events, "front")
        out = []
        for p in items:
            if not isinstance(p, dict):
                raise PayloadError("front webhook: expected a JSON object per delivery")
            if p.get("type") == "sync":
                continue  # a validation ping without a challenge: nothing to do
            ev = p.get("payload", p)
            if not isinstance(ev, dict) or not isinstance(ev.get("conversation"), dict):
                raise PayloadError("front webhook: event has no conversation object")
            eid = ev.get("id")
            if not isinstance(eid, str) or not eid or len(eid) > 200:
                raise PayloadError("front webhook: event id missing")
            etype = ev.get("type")
            subject, text = "", ""
            target = ev.get("target") or {}
            data = target.get("data") if isinstance(target, dict) else None
            if etype in ("inbound", "inbound_received") and isinstance(data, dict):
                subject = _s(data.get("subject"), "subject")
                text = _s(data.get("text"), "text") or _plain(_s(data.get("body"), "body"))
            out.append(self.incoming(ev["conversation"], subject=subject, body=text,
                                     version=eid, is_new=None))
        return out

    def poll(self) -> tuple[list[Incoming], dict[str, str]]:
        since = int(float(self.get_state("since") or self.cfg.poll_start_time))
        started = int(time.time())
        out: list[Incoming] = []
        path: str | None = f"/conversations/search/after:{max(0, since)}"
        for page_no in range(self.cfg.poll_max_pages):
            if not path:
                break
            page = self.request("GET", path) or {}
            for c in page.get("_results") or []:
                try:
                    inc = self.incoming(c)
                except PayloadError as exc:
                    log.warning("front: conversation skipped: %s", exc)
                    self.bad_items.append(str(exc))
                    continue
                if not inc.skip_reason and not self._drafted(inc.ticket.id):
                    subject, text = self.first_message(inc.ticket.id)
                    inc.ticket.subject = inc.ticket.subject or subject
                    inc.ticket.body = text
                out.append(inc)
            self.progress(f"front: search page {page_no + 1}, {len(out)} conversation(s)")
            path = self.relative((page.get("_pagination") or {}).get("next"))
        if path:  # more pages than poll_max_pages: resume from the same point next pass
            return out, {}
        return out, {"since": str(max(since, started - POLL_OVERLAP_S))}

    def _drafted(self, cid: str) -> bool:
        import sqlalchemy as sa

        from ticket_triage.storage import helpdesk_drafts

        with self.store.engine.connect() as conn:
            return conn.execute(sa.select(helpdesk_drafts.c.ticket_id).where(
                helpdesk_drafts.c.adapter == self.name,
                helpdesk_drafts.c.ticket_id == cid)).first() is not None

    # ---- out -----------------------------------------------------------------------------
    def _tag_id(self, name: str) -> str:
        """The id of company tag ``name``: cached, else looked up by name, else created."""
        cached = self.get_state(f"tag:{name}")
        if cached:
            return cached
        found = self._find_tag(name)
        if found is None:
            try:
                res = self.request("POST", "/company/tags", json_body={"name": name}) or {}
                found = str(res.get("id") or "") or None
            except RetryableError as exc:
                if exc.status != 409:
                    raise
            if found is None:  # created concurrently (409) or no id in the answer: look again
                found = self._find_tag(name)
            if found is None:
                raise PermanentError(f"front: could not find or create company tag {name!r}")
        self.set_state({f"tag:{name}": found})
        return found

    def _find_tag(self, name: str) -> str | None:
        path: str | None = "/company/tags?limit=100"
        for _ in range(100):
            if not path:
                return None
            page = self.request("GET", path) or {}
            for t in page.get("_results") or []:
                if isinstance(t, dict) and t.get("name") == name and t.get("id"):
                    return str(t["id"])
            path = self.relative((page.get("_pagination") or {}).get("next"))
        return None

    def _comment_exists(self, cid: str, ref: str) -> bool:
        path: str | None = f"/conversations/{cid}/comments"
        for _ in range(20):
            if not path:
                return False
            page = self.request("GET", path) or {}
            if any(ref in str(c.get("body") or "") for c in page.get("_results") or []
                   if isinstance(c, dict)):
                return True
            path = self.relative((page.get("_pagination") or {}).get("next"))
        return False

    def perform(self, op: dict[str, Any]) -> None:
        cid, kind = self.path_id(op["ticket_id"]), op["op"]
        if kind == "add_tags":
            self.request("POST", f"/conversations/{cid}/tags",
                         json_body={"tag_ids": [self._tag_id(n) for n in op["tags"]]})
        elif kind == "add_note":
            if op.get("ref") and op.get("_attempt", 1) > 1 and self._comment_exists(cid, op["ref"]):
                return
            body: dict[str, Any] = {"body": op["body"]}
            if self.cfg.author_id:
                body["author_id"] = str(self.cfg.author_id)
            self.request("POST", f"/conversations/{cid}/comments", json_body=body)
        elif kind == "route":
            if not op.get("assignee_id"):
                raise PermanentError(f"front route for {cid}: no assignee_id")
            self.request("PUT", f"/conversations/{cid}/assignee",
                         json_body={"assignee_id": str(op["assignee_id"])})
        else:
            raise PermanentError(f"front: unknown outbox op {kind!r}")
