"""Intercom: conversations polled through the search API; tags and an admin note out.

* Polling: ``POST /conversations/search`` with ``updated_at > <stored time>`` (pages via
  ``pagination.starting_after``).
* Tags are referenced by id: ``POST /tags {"name"}`` creates-or-returns the tag (its id is
  cached in the state table), then ``POST /conversations/{id}/tags {"id", "admin_id"}``.
* Note: ``POST /conversations/{id}/reply`` with ``message_type: note``.
* Routing: ``POST /conversations/{id}/parts`` with ``message_type: assignment``.
"""

from __future__ import annotations

import html
import os
import re
from typing import Any

from ticket_triage.helpdesk.base import HelpdeskAdapter, Incoming
from ticket_triage.helpdesk.outbox import PermanentError
from ticket_triage.schema import Ticket

_TAGS_RE = re.compile(r"<[^>]+>")


def _plain(s: Any) -> str:
    return html.unescape(_TAGS_RE.sub(" ", str(s or ""))).strip()


class IntercomAdapter(HelpdeskAdapter):
    name = "intercom"
    api_version = "2.11"

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

    def poll(self) -> tuple[list[Incoming], dict[str, str]]:
        since = int(self.get_state("since") or self.cfg.poll_start_time)
        newest = since
        out: list[Incoming] = []
        after: str | None = None
        for _ in range(self.cfg.poll_max_pages):
            body: dict[str, Any] = {"query": {"field": "updated_at", "operator": ">", "value": since},
                                    "pagination": {"per_page": 50}}
            if after:
                body["pagination"]["starting_after"] = after
            page = self.request("POST", "/conversations/search", json_body=body) or {}
            for c in page.get("conversations") or []:
                src = c.get("source") or {}
                tags = [t.get("name", "") for t in ((c.get("tags") or {}).get("tags") or [])]
                upd = int(c.get("updated_at") or 0)
                newest = max(newest, upd)
                out.append(Incoming(Ticket(id=str(c["id"]), subject=_plain(src.get("subject")),
                                           body=_plain(src.get("body")), tags=tags,
                                           source="intercom"), tags, version=str(upd)))
            after = ((page.get("pages") or {}).get("next") or {}).get("starting_after")
            if not after:
                break
        return out, {"since": str(newest)}

    def perform(self, op: dict[str, Any]) -> None:
        cid, kind = op["ticket_id"], op["op"]
        if kind == "add_tags":
            for name in op["tags"]:
                self.request("POST", f"/conversations/{cid}/tags",
                             json_body={"id": self._tag_id(name), "admin_id": self._admin()})
        elif kind == "add_note":
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
