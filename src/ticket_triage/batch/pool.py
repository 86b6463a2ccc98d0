"""Decide batches on several CPU cores: a pool of worker processes, each with the bundle loaded.

Most of a cascade decision is single-threaded Python (cleaning, rules, the TF-IDF first stage);
only the encoder, for the tickets the first stage does not decide, uses several threads. One
process therefore leaves cores idle. :class:`DecisionPool` starts ``workers`` processes (spawned,
so no torch / ONNX Runtime thread state is forked), loads the bundle once in each, with
``TRIAGE_TORCH_THREADS`` set so that the workers' encoder threads together use the cores and
numpy's BLAS capped as in the service (``TRIAGE_BLAS_THREADS``, default 1), and
decides pandas frames of input rows there, returning them **in input order**, with at most
``2 * workers`` frames in flight (bounded memory on any input size).

Each worker runs exactly :func:`ticket_triage.batch.frames.decide_chunk`, the code that the
single-process path and the Spark executors run, so the decisions are the same (a test holds
that). ``triage score --workers N`` uses it; ``benchmarks/bench_decide.py --workers N`` times it.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Iterator

_TRIAGE: Any = None  # the worker process's Triage (one per process)


def resolve_workers(workers: int | str | None) -> int:
    """``auto`` (or 0 / None): one worker per available CPU; else the number given (>= 1)."""
    from ticket_triage.models.base import available_cpus

    if workers in (None, "auto", 0, "0"):
        return available_cpus()
    try:
        n = int(workers)
    except (TypeError, ValueError):
        raise ValueError(f"workers must be a positive number or 'auto', got {workers!r}") from None
    if n < 1:
        raise ValueError(f"workers must be a positive number or 'auto', got {workers!r}")
    return n


def _init_worker(bundle: str, threads: int, cascade: bool) -> None:
    global _TRIAGE
    os.environ["TRIAGE_TORCH_THREADS"] = str(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ticket_triage.decision.triage import Triage
    from ticket_triage.models.base import limit_blas_threads

    # idle OpenBLAS threads spin after each small matrix product; with one process per core
    # they take the other workers' CPU (TRIAGE_BLAS_THREADS, default 1, as in the service)
    limit_blas_threads()

    # load what the first decisions would otherwise load (the encoder and its ONNX session are
    # lazy, and a ticket the cascade's first stage decides never touches them); the pool has no
    # LLM, so one decision warms the rest of the path too
    _TRIAGE = Triage.load(bundle, cascade=cascade).warm()
    _TRIAGE.decide([{"subject": "", "body": "warm up"}])


def _decide(frame: Any, batch_size: int) -> Any:
    from ticket_triage.batch.frames import decide_chunk

    return decide_chunk(_TRIAGE, frame, batch_size)


def _ping() -> int:
    return os.getpid()


class DecisionPool:
    """``workers`` processes deciding frames with the bundle at ``bundle`` (see the module doc).

    Use as a context manager; :meth:`map` yields decision frames in input order.
    ``threads_per_worker`` defaults to the available CPUs divided among the workers (at least 1).
    """

    def __init__(self, bundle: str | Path, workers: int | str = "auto", *, threads_per_worker: int | None = None,
                 cascade: bool = True, batch_size: int = 256):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from ticket_triage.models.base import available_cpus

        bundle = Path(bundle)
        if not bundle.is_dir():
            raise FileNotFoundError(f"{bundle} is not a model bundle folder")
        self.workers = resolve_workers(workers)
        self.threads = int(threads_per_worker or max(1, available_cpus() // self.workers))
        self.batch_size = int(batch_size)
        self._ex = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker,
                                       initargs=(str(bundle.resolve()), self.threads, bool(cascade)))

    def warm(self) -> "DecisionPool":
        """Start every worker and load the bundle (and its encoder) there now, else the first
        frames pay for it.
        A bundle that does not load raises here (``BrokenProcessPool``; the worker's traceback is
        on stderr): load it in the calling process first for a clear error, as ``triage score`` does."""
        futs = [self._ex.submit(_ping) for _ in range(self.workers * 2)]
        for f in futs:
            f.result()
        return self

    def map(self, frames: Iterable[Any]) -> Iterator[Any]:
        """Decision frames for input frames, in order, at most ``2 * workers`` in flight."""
        pending: deque = deque()
        for frame in frames:
            pending.append(self._ex.submit(_decide, frame, self.batch_size))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self._ex.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "DecisionPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
