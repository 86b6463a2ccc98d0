"""A fake Front Core API on 127.0.0.1 with conversation, message, comment and tag state.

* ``GET /conversations/search/{query}`` -- ``after:<unix ts>``; ``_results`` + ``_pagination.next``
  (conversation objects without ``updated_at``, as in Front's API: id, subject, status, tags,
  created_at, ``_links.related.last_message``)
* ``GET /conversations/{id}/messages`` -- newest first, paged (``limit``, ``page_token``)
* ``GET /company/tags`` (paged) / ``POST /company/tags {"name"}`` (409 if the name exists)
* ``POST /conversations/{id}/tags {"tag_ids"}`` -> 204
* ``GET|POST /conversations/{id}/comments`` -> 200 list / 201 comment
* ``PUT /conversations/{id}/assignee {"assignee_id"}`` -> 204

:func:`webhook` builds a signed application-webhook delivery (``X-Front-Signature`` over
``timestamp:body``), :func:`challenge` the handshake Front sends when a webhook is saved.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any
from urllib.parse import unquote

from zendesk_server import FakeServer, Recorded


def _signed(secret: str, payload: Any, ts_ms: int | None = None,
            extra: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    ts = str(int(time.time() * 1000) if ts_ms is None else ts_ms)
    sig = base64.b64encode(hmac.new(secret.encode(), f"{ts}:".encode() + body,
                                    hashlib.sha256).digest()).decode()
    return body, {"X-Front-Signature": sig, "X-Front-Request-Timestamp": ts,
                  "Content-Type": "application/json", **(extra or {})}


def webhook(secret: str, conversation: dict[str, Any], *, event_type: str = "inbound",
            event_id: str | None = None, message: dict[str, Any] | None = None,
            ts_ms: int | None = None) -> tuple[bytes, dict[str, str]]:
    event = {"_links": {"self": "https://api2.frontapp.com/events/evt_1"},
             "id": event_id or f"evt_{time.time_ns()}", "type": event_type,
             "emitted_at": time.time(), "conversation": conversation,
             "source": {"_meta": {"type": "inboxes"}, "data": []},
             "target": {"_meta": {"type": "message"}, "data": message} if message else None}
    return _signed(secret, {"type": event_type, "authorization": {"id": "cmp_1"},
                            "payload": event}, ts_ms)


def challenge(secret: str, value: str = "chal-123") -> tuple[bytes, dict[str, str]]:
    return _signed(secret, {"type": "sync", "authorization": {"id": "cmp_1"}},
                   extra={"X-Front-Challenge": value})


class FakeFront(FakeServer):
    def __init__(self, token: str = "front-token", page_size: int = 2) -> None:
        super().__init__()
        self.token = token
        self.page_size = page_size
        self.conversations: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.tags: list[dict[str, Any]] = []
        self.route("GET", r"/conversations/search/(.+)", self._search)
        self.route("GET", r"/conversations/(cnv_\w+)/messages", self._messages)
        self.route("GET", r"/company/tags", self._list_tags)
        self.route("POST", r"/company/tags", self._create_tag)
        self.route("POST", r"/conversations/(cnv_\w+)/tags", self._attach)
        self.route("GET", r"/conversations/(cnv_\w+)/comments", self._list_comments)
        self.route("POST", r"/conversations/(cnv_\w+)/comments", self._comment)
        self.route("PUT", r"/conversations/(cnv_\w+)/assignee", self._assign)
        self.route("POST", r"/tags", lambda r, m: (410, {"_error": {"message": "legacy endpoint"}}))

    def add_tag(self, name: str) -> dict[str, Any]:
        t = {"_links": {}, "id": f"tag_{len(self.tags) + 1:x}", "name": name,
             "highlight": None, "is_private": False, "created_at": time.time()}
        self.tags.append(t)
        return t

    def add_conversation(self, cid: str, messages: list[tuple[bool, str]], *, subject: str = "",
                         status: str = "unassigned", created_at: float | None = None) -> dict[str, Any]:
        """``messages``: (is_inbound, text) oldest first."""
        t0 = time.time() if created_at is None else created_at
        msgs = [{"_links": {}, "id": f"msg_{cid[4:]}_{i}", "type": "email", "is_inbound": inbound,
                 "created_at": t0 + i, "blurb": text[:50], "subject": subject,
                 "body": f"<div>{text}</div>", "text": text} for i, (inbound, text) in enumerate(messages)]
        c = {"_links": {"self": f"{self.url}/conversations/{cid}",
                        "related": {"last_message": f"{self.url}/messages/{msgs[-1]['id']}"}},
             "id": cid, "subject": subject, "status": status, "assignee": None,
             "recipient": {"handle": "ann@example.com"}, "tags": [], "created_at": t0,
             "is_private": False, "_activity": t0}
        with self._lock:
            self.conversations[cid] = c
            self.messages[cid] = msgs
        return c

    def tag_names(self, cid: str) -> list[str]:
        return [t["name"] for t in self.conversations[cid]["tags"]]

    def agent_tags(self, cid: str, name: str) -> None:
        with self._lock:
            t = next((t for t in self.tags if t["name"] == name), None) or self.add_tag(name)
            self.conversations[cid]["tags"].append(t)
            self.conversations[cid]["_activity"] = time.time()

    def _auth(self, rec: Recorded) -> bool:
        return rec.headers.get("Authorization") == f"Bearer {self.token}"

    def _page(self, items: list[Any], rec: Recorded, path: str) -> dict[str, Any]:
        start = int((rec.query.get("page_token") or ["0"])[0])
        chunk = items[start:start + self.page_size]
        nxt = f"{self.url}{path}?page_token={start + self.page_size}" \
            if start + self.page_size < len(items) else None
        return {"_pagination": {"next": nxt}, "_links": {"self": f"{self.url}{path}"},
                "_results": json.loads(json.dumps(chunk))}

    def _search(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        if not self._auth(rec):
            return 401, {"_error": {"status": 401, "title": "Unauthenticated"}}
        q = unquote(m.group(1))
        mt = re.fullmatch(r"after:(\d+)", q)
        if not mt:
            return 400, {"_error": {"message": f"bad query {q}"}}
        after = int(mt.group(1))
        with self._lock:
            items = sorted((c for c in self.conversations.values() if c["_activity"] > after),
                           key=lambda c: c["_activity"])
        items = [{k: v for k, v in c.items() if k != "_activity"} for c in items]
        return 200, {**self._page(items, rec, rec.path), "_total": len(items)}

    def _messages(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        msgs = list(reversed(self.messages.get(m.group(1), [])))  # newest first
        return 200, self._page(msgs, rec, rec.path)

    def _list_tags(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        return 200, self._page(self.tags, rec, rec.path)

    def _create_tag(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._lock:
            if any(t["name"] == rec.json["name"] for t in self.tags):
                return 409, {"_error": {"status": 409, "title": "Conflict",
                                        "message": "A tag with this name already exists"}}
            return 201, self.add_tag(rec.json["name"])

    def _attach(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._lock:
            c = self.conversations.get(m.group(1))
            ids = rec.json.get("tag_ids") or []
            tags = [t for t in self.tags if t["id"] in ids]
            if c is None or len(tags) != len(ids):
                return 404, {"_error": {"status": 404, "message": "not found"}}
            for t in tags:
                if t not in c["tags"]:
                    c["tags"].append(t)
            return 204, None

    def _list_comments(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        return 200, self._page(self.comments.get(m.group(1), []), rec, rec.path)

    def _comment(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._lock:
            if m.group(1) not in self.conversations:
                return 404, {"_error": {"status": 404}}
            lst = self.comments.setdefault(m.group(1), [])
            c = {"id": f"com_{len(lst) + 1}", "body": rec.json["body"], "posted_at": time.time(),
                 "author": {"id": rec.json.get("author_id")}}
            lst.append(c)
            return 201, c

    def _assign(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._lock:
            c = self.conversations.get(m.group(1))
            if c is None:
                return 404, {"_error": {"status": 404}}
            c["assignee"] = {"id": rec.json.get("assignee_id")}
            return 204, None
