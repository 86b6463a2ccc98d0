"""Front: conversations polled through search; tags and an internal comment out.

* Polling: ``GET /conversations/search/after:<unix time>`` (pages via ``_pagination.next``);
  the first message text comes from ``GET /conversations/{id}/messages``.
* Tags by id: ``POST /tags {"name"}`` (id cached), then
  ``POST /conversations/{id}/tags {"tag_ids": [...]}``.
* Note: ``POST /conversations/{id}/comments {"body", "author_id"?}`` (comments are internal).
* Routing: ``PUT /conversations/{id}/assignee {"assignee_id"}``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from ticket_triage.helpdesk.base import HelpdeskAdapter, Incoming
from ticket_triage.helpdesk.intercom import _plain
from ticket_triage.helpdesk.outbox import PermanentError
from ticket_triage.schema import Ticket


class FrontAdapter(HelpdeskAdapter):
    name = "front"

    def _headers(self) -> dict[str, str]:
        token = os.environ.get(self.cfg.api_token_env or "", "")
        h = {"Accept": "application/json"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    def _first_message(self, cid: str) -> tuple[str, str]:
        page = self.request("GET", f"/conversations/{cid}/messages") or {}
        msgs = page.get("_results") or []
        if not msgs:
            return "", ""
        first = min(msgs, key=lambda m: m.get("created_at") or 0)
        return str(first.get("subject") or ""), str(first.get("text") or _plain(first.get("body")))

    def poll(self) -> tuple[list[Incoming], dict[str, str]]:
        since = int(float(self.get_state("since") or self.cfg.poll_start_time))
        newest = float(since)
        out: list[Incoming] = []
        path: str | None = f"/conversations/search/after:{since}"
        for _ in range(self.cfg.poll_max_pages):
            if not path:
                break
            page = self.request("GET", path) or {}
            for c in page.get("_results") or []:
                tags = [t.get("name", "") for t in c.get("tags") or []]
                upd = float(c.get("updated_at") or c.get("created_at") or 0)
                newest = max(newest, upd)
                subject, body = self._first_message(str(c["id"]))
                out.append(Incoming(Ticket(id=str(c["id"]), subject=str(c.get("subject") or subject),
                                           body=body, tags=tags, source="front"),
                                    tags, version=str(upd)))
            nxt = (page.get("_pagination") or {}).get("next")
            path = None
            if nxt:
                u = urlsplit(nxt)
                path = u.path + (f"?{u.query}" if u.query else "")
        return out, {"since": str(int(newest))}

    def perform(self, op: dict[str, Any]) -> None:
        cid, kind = op["ticket_id"], op["op"]
        if kind == "add_tags":
            self.request("POST", f"/conversations/{cid}/tags",
                         json_body={"tag_ids": [self._tag_id(n) for n in op["tags"]]})
        elif kind == "add_note":
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
