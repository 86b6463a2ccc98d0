"""A fake OpenAI-compatible chat endpoint: a real HTTP server on 127.0.0.1, scripted per test.

    with FakeOpenAI() as fake:
        fake.script("label", label="card_payments")     # every request from now on
        fake.enqueue("status", status=500)               # the next request only (FIFO)
        client_cfg = {"base_url": fake.base_url, ...}
        ...
        fake.requests  # every request body (parsed JSON), for PII / prompt assertions

Behaviours: ``label`` (answer a topic), ``abstain``, ``invalid`` (a label outside the enum),
``malformed`` (content that is not JSON), ``status`` (an HTTP error, e.g. 500),
``rate_limit`` (HTTP 429 with ``Retry-After``), ``hang`` (sleep before answering),
``keyword`` (label chosen by a substring of the user message; default when none matches).
``max_in_flight``: the most chat requests answered at once since ``reset()`` (concurrency checks).
Usage tokens are reported (``prompt_tokens`` = words in the request / a fixed number).

Run standalone (for the service smoke test and by hand)::

    python -m tests.fakes.openai_server --port 8011 --behaviour label --label card_payments
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BEHAVIOURS = ("label", "abstain", "invalid", "malformed", "status", "rate_limit", "hang", "keyword")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        elif self.path == "/_requests":
            self._json(200, {"requests": self.server.fake.requests})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake = self.server.fake
        if self.path == "/_script":  # remote control for a server run in another process
            body = json.loads(raw or b"{}")
            fake.script(body.pop("behaviour"), **body)
            self._json(200, {"ok": True})
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "request body is not JSON"}})
            return
        step = fake._record(body, {k.lower(): v for k, v in self.headers.items()})
        with fake._lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            self._answer(fake, body, step)
        finally:
            with fake._lock:
                fake.in_flight -= 1

    def _answer(self, fake: "FakeOpenAI", body: dict[str, Any], step: dict[str, Any]) -> None:
        kind = step["behaviour"]
        if kind == "hang":
            time.sleep(float(step.get("seconds", 30)))
            if fake._closing.is_set():
                return
            kind, step = "label", {**step, "label": step.get("label", "abstain")}
        if kind == "status":
            code = int(step.get("status", 500))
            self._json(code, {"error": {"message": f"scripted {code}", "type": "server_error"}})
            return
        if kind == "rate_limit":
            self._json(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                       headers={"Retry-After": str(step.get("retry_after", 1))})
            return
        if kind == "malformed":
            content = step.get("content", "Sure! The label is card_payments {not json")
        elif kind == "abstain":
            content = json.dumps({"label": "abstain", "reason": "no topic fits"})
        elif kind == "invalid":
            content = json.dumps({"label": step.get("label", "not_a_topic"), "reason": "made up"})
        elif kind == "keyword":
            user = " ".join(m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user")
            ticket = user.rsplit("Ticket:", 1)[-1].lower()
            label = step.get("default", "abstain")
            for word, lab in (step.get("keywords") or {}).items():
                if word.lower() in ticket:
                    label = lab
                    break
            content = json.dumps({"label": label, "reason": "keyword"})
        else:  # label
            content = json.dumps({"label": step.get("label", "abstain"), "reason": "scripted"})
        n_in = int(step.get("prompt_tokens") or sum(
            len(str(m.get("content", "")).split()) for m in body.get("messages", [])))
        n_out = int(step.get("completion_tokens", 12))
        self._json(200, {
            "id": f"chatcmpl-fake-{len(fake.requests)}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "fake-model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
        })

    def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: "FakeOpenAI"


class FakeOpenAI:
    """The fake endpoint; a context manager that serves on 127.0.0.1:<port> (0 = free port)."""

    def __init__(self, port: int = 0, behaviour: str = "abstain", **params: Any):
        self._lock = threading.Lock()
        self._queue: deque[dict[str, Any]] = deque()
        self._default: dict[str, Any] = {}
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0  # chat requests being answered now, and the most at once since reset()
        self.max_in_flight = 0
        self._closing = threading.Event()
        self.script(behaviour, **params)
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, behaviour: str, **params: Any) -> None:
        """Answer every following request this way (clears anything enqueued)."""
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; known: {', '.join(BEHAVIOURS)}")
        with self._lock:
            self._default = {"behaviour": behaviour, **params}
            self._queue.clear()

    def enqueue(self, behaviour: str, **params: Any) -> None:
        """Answer the next request this way, then fall back to the scripted default."""
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; known: {', '.join(BEHAVIOURS)}")
        with self._lock:
            self._queue.append({"behaviour": behaviour, **params})

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self.max_in_flight = self.in_flight

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            return self._queue.popleft() if self._queue else dict(self._default)

    def sent_text(self) -> str:
        """Everything every request sent, as one string (for PII assertions)."""
        with self._lock:
            return "\n".join(json.dumps(r, ensure_ascii=False) for r in self.requests)

    def start(self) -> "FakeOpenAI":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--behaviour", default="abstain", choices=BEHAVIOURS)
    ap.add_argument("--label", default="abstain")
    args = ap.parse_args()
    fake = FakeOpenAI(args.port, args.behaviour, label=args.label)
    print(f"fake OpenAI endpoint on {fake.base_url} ({args.behaviour})", flush=True)
    try:
        fake._httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
