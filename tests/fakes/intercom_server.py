"""A fake Intercom REST API (version 2.11 shapes) on 127.0.0.1, with conversation state.

* ``POST /conversations/search`` -- ``{"query": {"field": "updated_at", "operator": ">",
  "value"}, "pagination": {"per_page", "starting_after"}}`` -> ``{"type": "conversation.list",
  "conversations", "total_count", "pages": {"type": "pages", "page", "per_page",
  "total_pages", "next": {"page", "starting_after"} | absent}}``
* ``GET /conversations/{id}`` -- the conversation with ``conversation_parts``
* ``POST /tags {"name"}`` -- create-or-return a tag by name (case-insensitive)
* ``POST /conversations/{id}/tags {"id", "admin_id"}`` -- attach a tag
* ``POST /conversations/{id}/reply {"message_type": "note", "type": "admin", "admin_id", "body"}``
* ``POST /conversations/{id}/parts {"message_type": "assignment", ...}``

Every request must carry ``Authorization: Bearer <token>`` (else 401) and ``Intercom-Version``.
:func:`webhook` builds a signed ``notification_event`` delivery (``X-Hub-Signature``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

from zendesk_server import FakeServer, Recorded


def webhook(secret: str, conversation: dict[str, Any], *, topic: str = "conversation.user.created",
            notif_id: str | None = None, created_at: int | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers of an Intercom webhook notification, signed like Intercom signs it."""
    payload = {"type": "notification_event", "app_id": "abc123",
               "data": {"type": "notification_event_data", "item": conversation},
               "links": {}, "id": notif_id or f"notif_{conversation['id']}_{time.time_ns()}",
               "topic": topic, "delivery_status": "pending", "delivery_attempts": 1,
               "delivered_at": 0, "first_sent_at": int(time.time()),
               "created_at": int(time.time()) if created_at is None else created_at,
               "self": None}
    body = json.dumps(payload).encode()
    sig = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return body, {"X-Hub-Signature": sig, "Content-Type": "application/json"}


def conversation(cid: str | int, body: str, *, subject: str = "", updated_at: int | None = None,
                 state: str = "open", tags: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """An Intercom conversation object (the fields the API reference lists that we read)."""
    now = int(time.time()) if updated_at is None else updated_at
    return {"type": "conversation", "id": str(cid), "created_at": now, "updated_at": now,
            "title": None, "state": state, "open": state == "open", "read": False,
            "source": {"type": "conversation", "id": f"src{cid}",
                       "delivered_as": "customer_initiated", "subject": subject,
                       "body": f"<p>{body}</p>",
                       "author": {"type": "user", "id": "u1", "name": "Ann",
                                  "email": "ann@example.com"}},
            "tags": {"type": "tag.list", "tags": list(tags)},
            "conversation_parts": {"type": "conversation_part.list", "conversation_parts": [],
                                   "total_count": 0}}


class FakeIntercom(FakeServer):
    def __init__(self, token: str = "ic-token", page_size: int = 2) -> None:
        super().__init__()
        self.token = token
        self.page_size = page_size
        self.conversations: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, dict[str, Any]] = {}
        self.route("POST", r"/conversations/search", self._search)
        self.route("GET", r"/conversations/(\d+)", self._get)
        self.route("POST", r"/tags", self._create_tag)
        self.route("POST", r"/conversations/(\d+)/tags", self._attach)
        self.route("POST", r"/conversations/(\d+)/reply", self._reply)
        self.route("POST", r"/conversations/(\d+)/parts", self._part)
        self.auth_failures = 0

    def add_conversation(self, cid: str | int, body: str, *, subject: str = "",
                         updated_at: int | None = None, state: str = "open",
                         tags: list[str] = ()) -> dict[str, Any]:
        with self._lock:
            c = conversation(cid, body, subject=subject, updated_at=updated_at, state=state,
                             tags=[self._tag(t) for t in tags])
            self.conversations[str(cid)] = c
        return c

    def _tag(self, name: str) -> dict[str, Any]:
        key = name.lower()
        if key not in self.tags:
            self.tags[key] = {"type": "tag", "id": str(1000 + len(self.tags)), "name": name}
        return self.tags[key]

    def tag_names(self, cid: str | int) -> list[str]:
        return [t["name"] for t in self.conversations[str(cid)]["tags"]["tags"]]

    def notes(self, cid: str | int) -> list[dict[str, Any]]:
        return [p for p in self.conversations[str(cid)]["conversation_parts"]["conversation_parts"]
                if p["part_type"] == "note"]

    def agent_tags(self, cid: str | int, name: str) -> None:
        with self._lock:
            c = self.conversations[str(cid)]
            c["tags"]["tags"].append(self._tag(name))
            c["updated_at"] = int(time.time()) + 1

    def _authorized(self, rec: Recorded) -> bool:
        ok = rec.headers.get("Authorization") == f"Bearer {self.token}" and \
            bool(rec.headers.get("Intercom-Version"))
        self.auth_failures += not ok
        return ok

    def _search(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        if not self._authorized(rec):
            return 401, {"type": "error.list", "errors": [{"code": "unauthorized"}]}
        q = rec.json["query"]
        assert q["field"] == "updated_at" and q["operator"] in (">", "<", "=")
        with self._lock:
            items = sorted((c for c in self.conversations.values()
                            if c["updated_at"] > q["value"]), key=lambda c: (c["updated_at"], int(c["id"])))
        per = min(int(rec.json.get("pagination", {}).get("per_page", 20)), self.page_size)
        after = rec.json.get("pagination", {}).get("starting_after")
        start = int(base64.b64decode(after).decode()) if after else 0
        chunk = items[start:start + per]
        total_pages = max(1, -(-len(items) // per))
        pages: dict[str, Any] = {"type": "pages", "page": start // per + 1, "per_page": per,
                                 "total_pages": total_pages}
        if start + per < len(items):
            pages["next"] = {"page": start // per + 2,
                             "starting_after": base64.b64encode(str(start + per).encode()).decode()}
        return 200, {"type": "conversation.list", "conversations": json.loads(json.dumps(chunk)),
                     "total_count": len(items), "pages": pages}

    def _get(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        c = self.conversations.get(m.group(1))
        return (200, c) if c else (404, {"type": "error.list", "errors": [{"code": "not_found"}]})

    def _create_tag(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._lock:
            return 200, dict(self._tag(rec.json["name"]))

    def _attach(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._lock:
            c = self.conversations.get(m.group(1))
            tag = next((t for t in self.tags.values() if t["id"] == rec.json.get("id")), None)
            if c is None or tag is None or not rec.json.get("admin_id"):
                return 404, {"type": "error.list", "errors": [{"code": "not_found"}]}
            if tag not in c["tags"]["tags"]:
                c["tags"]["tags"].append(tag)
            return 200, dict(tag)

    def _reply(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._lock:
            c = self.conversations.get(m.group(1))
            if c is None:
                return 404, {"type": "error.list", "errors": [{"code": "not_found"}]}
            parts = c["conversation_parts"]["conversation_parts"]
            parts.append({"type": "conversation_part", "id": str(len(parts) + 1),
                          "part_type": rec.json["message_type"], "body": rec.json["body"],
                          "author": {"type": "admin", "id": rec.json["admin_id"]}})
            c["conversation_parts"]["total_count"] = len(parts)
            return 200, c

    def _part(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._lock:
            c = self.conversations.get(m.group(1))
            if c is None:
                return 404, {"type": "error.list", "errors": [{"code": "not_found"}]}
            c["admin_assignee_id"] = rec.json.get("assignee_id")
            return 200, c
