"""Micro-batching: concurrent single-ticket calls coalesced into one batched ``decide``.

Encoding one ticket costs almost as much as encoding eight, so when several requests are in
flight the service answers them with one forward pass. A worker thread (started on first
use) takes the first waiting item, collects more for at most ``max_wait_s`` (or until
``max_batch``), calls ``fn(items)`` once and hands each caller its own result. A failure of
the batched call is raised in every caller of that batch.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Sequence


class MicroBatcher:
    def __init__(self, fn: Callable[[list[Any]], Sequence[Any]], *, max_batch: int = 64,
                 max_wait_s: float = 0.002, name: str = "micro-batcher"):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.fn = fn
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.name = name
        self._q: "queue.Queue[tuple[Any, Future]]" = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.items = 0

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def submit(self, item: Any, timeout: float | None = None) -> Any:
        """Block until ``item``'s result is ready (or raise what the batched call raised)."""
        self._ensure_worker()
        fut: Future = Future()
        self._q.put((item, fut))
        return fut.result(timeout=timeout)

    def _run(self) -> None:
        while True:
            first = self._q.get()
            batch = [first]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    batch.append(self._q.get(timeout=left) if left > 0 else self._q.get_nowait())
                except queue.Empty:
                    break
            items = [b[0] for b in batch]
            try:
                results = list(self.fn(items))
                if len(results) != len(items):
                    raise RuntimeError(f"batched call returned {len(results)} results for {len(items)} items")
            except BaseException as exc:  # noqa: BLE001 - handed to every caller
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(items)
            for (_, fut), res in zip(batch, results):
                fut.set_result(res)
