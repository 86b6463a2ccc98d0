"""A real HTTP server on 127.0.0.1 (in a thread) that fakes the helpdesk APIs we call.

``FakeServer`` records every request and can be scripted to fail (``fail_next(429,
headers={"Retry-After": "1"})``, ``fail_next(500)``, ``drop_next()`` to close the connection),
to rate-limit like the vendors do (``rate_limit(n, per_s)``: the n+1-th request in a window
gets 429 with ``Retry-After``), and to stall after applying a write (``stall_after(...)``: the
change is made, the answer never comes -- what a client sees when it dies mid-call).
``FakeZendesk`` adds the Zendesk Support API v2 endpoints the adapter uses, with ticket state
and the shapes of Zendesk's API reference:

* ``PUT /api/v2/tickets/{id}/tags.json``  -- adds tags
* ``PUT /api/v2/tickets/{id}.json``       -- comment (private note), custom_fields, group_id,
  assignee_id; a closed ticket answers 422 ("Status: closed prevents ticket update")
* ``GET /api/v2/tickets/{id}.json``, ``GET /api/v2/tickets/{id}/comments.json`` (paged)
* ``GET /api/v2/incremental/tickets/cursor.json`` -- ``start_time`` / ``cursor`` paging with
  ``after_cursor``, ``after_url`` and ``end_of_stream``

``tests/fakes/intercom_server.py`` and ``front_server.py`` build on ``FakeServer``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any
    at: float = field(default_factory=time.time)


@dataclass
class _Failure:
    status: int
    headers: dict[str, str]
    times: int
    path_contains: str | None
    drop: bool = False


Handler = Callable[[Recorded, re.Match[str]], tuple[int, Any]]


class FakeServer:
    """Records requests, answers from registered routes, fails on demand."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.received = threading.Condition()
        self._rate: tuple[int, float] | None = None
        self._window: list[float] = []
        self.rate_limited = 0
        self._stall: tuple[str, str, int] | None = None  # (method, path part, nth)
        self._stall_seen = 0
        self.release = threading.Event()
        self.stalled = threading.Event()

    # ---- scripting -----------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), re.compile(pattern + r"$"), handler))

    def fail_next(self, status: int, *, times: int = 1, headers: dict[str, str] | None = None,
                  path_contains: str | None = None) -> None:
        with self._lock:
            self._failures.append(_Failure(status, headers or {}, times, path_contains))

    def rate_limit(self, n: int, per_s: float) -> None:
        """Answer 429 + Retry-After once more than ``n`` requests came within ``per_s``."""
        self._rate = (n, per_s)

    def stall_after(self, method: str, path_regex: str, nth: int = 1) -> None:
        """Apply the ``nth`` request whose path matches ``path_regex`` (``re.search``), then
        hold its answer until ``release`` is set (``stalled`` is set when it happens)."""
        self._stall = (method, path_regex, nth)
        self._stall_seen = 0
        self.stalled.clear()
        self.release.clear()

    def drop_next(self, *, times: int = 1, path_contains: str | None = None) -> None:
        """Close the connection without an answer (a network failure)."""
        with self._lock:
            self._failures.append(_Failure(0, {}, times, path_contains, drop=True))

    def calls(self, method: str | None = None, path_contains: str = "") -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and path_contains in r.path]

    def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.time() + timeout
        with self.received:
            while not pred():
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.received.wait(left)
        return True

    # ---- serving -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "call start() first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeServer":
        server = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                u = urlsplit(self.path)
                rec = Recorded(self.command, u.path, parse_qs(u.query), dict(self.headers), body)
                with server._lock:
                    server.requests.append(rec)
                    limited = None
                    if server._rate is not None:
                        n, per = server._rate
                        now = time.time()
                        server._window = [t for t in server._window if t > now - per]
                        if len(server._window) >= n:
                            limited = max(1, int(server._window[0] + per - now + 0.999))
                            server.rate_limited += 1
                        else:
                            server._window.append(now)
                    stall = False
                    if server._stall and self.command == server._stall[0] \
                            and re.search(server._stall[1], u.path):
                        server._stall_seen += 1
                        stall = server._stall_seen == server._stall[2]
                    fail = None
                    for f in server._failures:
                        if f.times > 0 and (f.path_contains is None or f.path_contains in u.path):
                            f.times -= 1
                            fail = f
                            break
                    server._failures = [f for f in server._failures if f.times > 0]
                try:
                    if limited is not None:
                        self._send(429, {"error": "APIRateLimitExceeded"},
                                   {"Retry-After": str(limited)})
                        return
                    if fail is not None and fail.drop:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if fail is not None:
                        self._send(fail.status, {"error": "scripted failure"}, fail.headers)
                        return
                    for method, pat, handler in server._routes:
                        m = pat.match(u.path)
                        if m and method == self.command:
                            status, payload = handler(rec, m)
                            if stall:  # applied; the client never hears back
                                server.stalled.set()
                                server.release.wait(30)
                                self.close_connection = True
                                return
                            self._send(status, payload)
                            return
                    self._send(404, {"error": f"no fake route for {self.command} {u.path}"})
                finally:
                    with server.received:
                        server.received.notify_all()

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = b"" if status in (204, 304) else json.dumps(payload).encode()
                self.send_response(status)
                if status not in (204, 304):
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class FakeZendesk(FakeServer):
    """Zendesk Support API v2, just the endpoints the adapter uses."""

    def __init__(self, page_size: int = 100) -> None:
        super().__init__()
        self.tickets: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.page_size = page_size
        # Every change appends the ticket id here; the incremental export's cursor is a
        # position in this log (Zendesk's cursor is opaque; clients only pass it back).
        self.changes: list[str] = []
        self.route("PUT", r"/api/v2/tickets/(\d+)/tags\.json", self._add_tags)
        self.route("PUT", r"/api/v2/tickets/(\d+)\.json", self._update)
        self.route("GET", r"/api/v2/tickets/(\d+)\.json", self._get)
        self.route("GET", r"/api/v2/tickets/(\d+)/comments\.json", self._comments)
        self.route("GET", r"/api/v2/incremental/tickets/cursor\.json", self._incremental)

    def add_ticket(self, tid: str | int, subject: str, description: str, tags: list[str] | None = None,
                   updated_at: str = "2026-01-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
        t = {"id": int(tid), "subject": subject, "description": description,
             "tags": list(tags or []), "updated_at": updated_at, "created_at": updated_at,
             "status": "new", "group_id": None, "assignee_id": None, **extra}
        with self._lock:
            self.tickets[str(tid)] = t
            self.changes.append(str(tid))
        return t

    def touch(self, tid: str | int) -> None:
        """Record a change to a ticket (its updated_at moves; the export will list it again).
        Tests call it after editing ``tickets[...]`` as an agent would."""
        with self._lock:
            self._touch(str(tid))

    def _touch(self, tid: str) -> None:
        t = self.tickets[tid]
        prev = t.get("updated_at") or ""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        t["updated_at"] = now if now > prev else prev[:-1] + "." + str(len(self.changes)) + "Z"
        self.changes.append(tid)

    def tags_of(self, tid: str | int) -> list[str]:
        return list(self.tickets.get(str(tid), {}).get("tags", []))

    def notes_of(self, tid: str | int) -> list[dict[str, Any]]:
        return list(self.comments.get(str(tid), []))

    def _ticket(self, tid: str) -> dict[str, Any]:
        return self.tickets.setdefault(tid, {"id": int(tid), "tags": [], "subject": "",
                                             "description": "", "updated_at": ""})

    def _add_tags(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._lock:
            if self._closed(m.group(1)):
                return 422, {"error": "RecordInvalid",
                             "description": "Status: closed prevents ticket update"}
            t = self._ticket(m.group(1))
            for tag in (rec.json or {}).get("tags", []):
                if tag not in t["tags"]:
                    t["tags"].append(tag)
            self._touch(m.group(1))
            return 200, {"tags": list(t["tags"])}

    def _closed(self, tid: str) -> bool:
        return self.tickets.get(tid, {}).get("status") == "closed"

    def _comments(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        items = [{"id": i + 1, "type": "Comment", "body": c.get("body"),
                  "public": c.get("public", True)} for i, c in enumerate(self.notes_of(m.group(1)))]
        page = int((rec.query.get("page") or ["1"])[0])
        size = 2  # small pages so clients must follow next_page
        chunk = items[(page - 1) * size:page * size]
        nxt = f"{self.url}/api/v2/tickets/{m.group(1)}/comments.json?page={page + 1}" \
            if page * size < len(items) else None
        return 200, {"comments": chunk, "next_page": nxt, "count": len(items)}

    def _update(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        body = (rec.json or {}).get("ticket") or {}
        with self._lock:
            if self._closed(m.group(1)):
                return 422, {"error": "RecordInvalid", "description": "Record validation errors",
                             "details": {"status": [{"description":
                                                     "Status: closed prevents ticket update"}]}}
            t = self._ticket(m.group(1))
            if "custom_fields" in body:
                fields = {f["id"]: f for f in t.setdefault("custom_fields", [])}
                for f in body["custom_fields"]:
                    fields[f["id"]] = {"id": f["id"], "value": f["value"]}
                t["custom_fields"] = list(fields.values())
            if "comment" in body:
                self.comments.setdefault(m.group(1), []).append(body["comment"])
            for k in ("group_id", "assignee_id", "status", "priority"):
                if k in body:
                    t[k] = body[k]
            if "tags" in body:  # a full replace (the adapter must never send this)
                t["tags"] = list(body["tags"])
            self._touch(m.group(1))
            return 200, {"ticket": dict(t)}

    def _get(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        t = self.tickets.get(m.group(1))
        return (200, {"ticket": t}) if t else (404, {"error": "RecordNotFound"})

    def _incremental(self, rec: Recorded, m: re.Match[str]) -> tuple[int, Any]:
        with self._lock:
            start = int(rec.query["cursor"][0]) if "cursor" in rec.query else 0
            entries = self.changes[start:start + self.page_size]
            seen: dict[str, None] = {}
            for tid in entries:
                seen[tid] = None
            page = [json.loads(json.dumps(self.tickets[tid])) for tid in seen]
            end = start + len(entries)
            done = end >= len(self.changes)
        base = f"{self.url}/api/v2/incremental/tickets/cursor.json"
        return 200, {"tickets": page, "after_cursor": str(end), "before_cursor": str(start),
                     "after_url": f"{base}?cursor={end}", "before_url": f"{base}?cursor={start}",
                     "end_of_stream": done}

    def set_field(self, tid: str | int, field_id: int, value: str | None) -> None:
        """An agent changes a custom field (and the ticket's updated_at moves)."""
        with self._lock:
            t = self.tickets[str(tid)]
            fields = {f["id"]: f for f in t.setdefault("custom_fields", [])}
            fields[field_id] = {"id": field_id, "value": value}
            t["custom_fields"] = list(fields.values())
            self._touch(str(tid))

    def field_of(self, tid: str | int, field_id: int) -> Any:
        for f in self.tickets.get(str(tid), {}).get("custom_fields", []):
            if f["id"] == field_id:
                return f["value"]
        return None
