"""The one classifier interface every family implements.

A classifier maps cleaned texts to a probability matrix over its own ``labels`` (columns in
that order). It saves to, and loads from, a directory that holds ``classifier.json`` (family,
labels, hyperparameters) plus family-specific files. Loading never unpickles arbitrary
objects: scikit-learn parts go through :mod:`ticket_triage.models.safe_io` (arrays + a JSON
manifest, an explicit list of buildable types, linear in the model's size; files saved by
earlier versions with skops still load with skops' trusted types), neural parts through
safetensors / the libraries' own ``save_pretrained`` formats.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

META_FILE = "classifier.json"


class TrainingDataError(ValueError):
    """The training data cannot train a model (empty, one label, a label with too few rows)."""


class Classifier(ABC):
    family: ClassVar[str] = ""
    #: True when refitting from scratch costs little (a frozen encoder whose embeddings are
    #: cached, a linear head): ``build_bundle`` then cross-fits the family to tune the
    #: thresholds on out-of-fold scores of the whole train split, not on validation alone.
    cheap_refit: ClassVar[bool] = False
    #: True when a refit's cost grows with the characters it reads (TF-IDF features are built from
    #: the text every time): cross-fitting then stops at ``thresholds.cross_fit_max_train_chars``.
    refit_scales_with_text: ClassVar[bool] = False
    #: True when ``fit`` takes ``validation=(texts, labels)`` (early stopping of the fine-tuned
    #: encoder families); ``train_candidate`` then passes the sweep's validation split.
    uses_validation: ClassVar[bool] = False

    def __init__(self, **params: Any):
        self.params: dict[str, Any] = dict(params)
        self.labels: list[str] = []

    # -- training / prediction -------------------------------------------------------------
    @abstractmethod
    def fit(self, texts: Sequence[str], labels: Sequence[str], *, progress: bool = True) -> "Classifier":
        """Train on cleaned texts and their labels; sets ``self.labels`` (sorted, unique)."""

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape (len(texts), len(self.labels)), rows sum to 1."""

    def embed(self, texts: Sequence[str]) -> np.ndarray | None:
        """A dense representation of the texts (for nearest neighbours, out-of-scope and
        drift), or None when the family has none."""
        return None

    def fresh(self) -> "Classifier":
        """An untrained classifier of the same family with the same hyperparameters."""
        return type(self)(**self.params)

    def predict(self, texts: Sequence[str]) -> list[str]:
        p = self.predict_proba(texts)
        return [self.labels[i] for i in p.argmax(axis=1)]

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / META_FILE).write_text(json.dumps(
            {"family": self.family, "labels": self.labels, "params": self.params}, indent=2))
        self._save_weights(path)
        return path

    @abstractmethod
    def _save_weights(self, path: Path) -> None: ...

    @classmethod
    @abstractmethod
    def _load_weights(cls, path: Path, params: dict[str, Any]) -> "Classifier": ...


def progress_enabled(progress: bool) -> bool:
    """Show a tqdm bar only when asked to and stderr is a terminal (not in CI logs or pipes)."""
    import sys

    return bool(progress) and sys.stderr.isatty()


PROGRESS_LOG_SECONDS = 30.0  # default interval of the log lines that stand in for a bar (TRIAGE_PROGRESS_SECONDS)


class LogProgress:
    """A progress bar for logs: the tqdm calls used here (``update``, ``close``, iteration,
    context manager), written as a log line at most every ``interval`` seconds
    (``desc: 3/5 fold (60%), 42 s elapsed, about 28 s left``) and once at the end."""

    def __init__(self, iterable: Any = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 interval: float | None = None, logger: Any = None) -> None:
        import logging
        import os
        import time

        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.interval = float(interval if interval is not None
                              else os.environ.get("TRIAGE_PROGRESS_SECONDS", PROGRESS_LOG_SECONDS))
        self.log = logger or logging.getLogger("ticket_triage.progress")
        self._clock = time.monotonic
        self.start = self._last = self._clock()
        self._closed = False
        self.postfix = ""

    def _line(self) -> str:
        elapsed = self._clock() - self.start
        post = f" [{self.postfix}]" if self.postfix else ""
        if self.total:
            left = elapsed / self.n * (self.total - self.n) if self.n else float("nan")
            eta = f", about {left:.0f} s left" if self.n and self.n < self.total else ""
            return (f"{self.desc}: {self.n}/{self.total} {self.unit} ({self.n / self.total:.0%}), "
                    f"{elapsed:.0f} s elapsed{eta}{post}")
        return f"{self.desc}: {self.n} {self.unit}, {elapsed:.0f} s elapsed{post}"

    def set_postfix(self, **kwargs: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kwargs.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            self.log.info(self._line())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.log.info(self._line() + (" (done)" if self.total and self.n >= self.total else ""))

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _NoProgress(LogProgress):
    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self._closed = True


class heartbeat:
    """``with heartbeat("fit ensemble-tag"):`` logs ``fit ensemble-tag: still running, 60 s``
    every ``interval`` seconds (``TRIAGE_PROGRESS_SECONDS``, default 30) while the block runs:
    for steps that cannot count their own progress (a solver's fit), so a log is never silent
    for minutes. The logging thread stops when the block ends."""

    def __init__(self, desc: str, interval: float | None = None, logger: Any = None) -> None:
        import logging
        import os

        self.desc = desc
        self.interval = float(interval if interval is not None
                              else os.environ.get("TRIAGE_PROGRESS_SECONDS", PROGRESS_LOG_SECONDS))
        self.log = logger or logging.getLogger("ticket_triage.progress")

    def __enter__(self) -> "heartbeat":
        import threading
        import time

        self._stop = threading.Event()
        start = time.monotonic()

        def beat() -> None:
            while not self._stop.wait(self.interval):
                self.log.info("%s: still running, %.0f s", self.desc, time.monotonic() - start)

        self._thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def progress_bar(iterable: Any = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 progress: bool = True) -> Any:
    """A tqdm bar on a terminal; :class:`LogProgress` (periodic log lines) when stderr is a log
    or a pipe, so long steps are never silent there; nothing when ``progress`` is false."""
    import sys

    if not progress:
        return _NoProgress(iterable, total=total, desc=desc, unit=unit)
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, mininterval=1.0)
    return LogProgress(iterable, total=total, desc=desc, unit=unit)


def merged_params(defaults: dict[str, Any], params: dict[str, Any], family: str) -> dict[str, Any]:
    """Defaults overlaid with the given params; unknown keys are an error that names them."""
    unknown = sorted(set(params) - set(defaults) - {"family"})
    if unknown:
        raise TypeError(f"{family}: unknown hyperparameter(s) {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(defaults))} (see conf/model/{family}.yaml)")
    out = dict(defaults)
    out.update({k: v for k, v in params.items() if k != "family"})
    return out


def save_sklearn(obj: Any, path: str | Path) -> None:
    """Write a fitted scikit-learn object (no pickle; linear in its size): see ``safe_io``."""
    from ticket_triage.models.safe_io import dump_estimator

    dump_estimator(obj, path)


def load_sklearn(path: str | Path, legacy_skops: str | Path | None = None,
                 trusted: Sequence[str] = ()) -> Any:
    """Load what :func:`save_sklearn` wrote. When ``path`` is missing but ``legacy_skops``
    (a file saved by an earlier version) exists, load that with skops, trusting only skops'
    defaults plus ``trusted`` (anything else raises ``UntrustedTypesFoundException``)."""
    from ticket_triage.models.safe_io import load_estimator

    path = Path(path)
    if not path.is_file() and legacy_skops is not None and Path(legacy_skops).is_file():
        return load_skops(legacy_skops, trusted)
    return load_estimator(path)


def load_skops(path: str | Path, trusted: Sequence[str]) -> Any:
    """Load a skops file (models saved by earlier versions), trusting only skops' defaults
    plus the explicit ``trusted`` type names. Anything else raises
    ``skops.io.exceptions.UntrustedTypesFoundException``."""
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the saved classifier is incomplete; save it again")
    return sio.load(path, trusted=list(trusted))


def check_training_data(texts: Sequence[str], labels: Sequence[str], min_per_label: int = 2) -> None:
    """Raise TrainingDataError with a message that says what to do next."""
    if len(texts) == 0:
        raise TrainingDataError("no training data: the train split is empty. Check the ingest and "
                                "split reports under artifacts/ (were all rows rejected or set aside?)")
    if len(texts) != len(labels):
        raise TrainingDataError(f"{len(texts)} texts but {len(labels)} labels")
    uniq, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
    if len(uniq) < 2:
        raise TrainingDataError(f"only one label ({uniq[0]!r}) in the training data: a classifier needs two or more")
    few = [f"{u} ({c})" for u, c in zip(uniq, counts) if c < min_per_label]
    if few:
        raise TrainingDataError(
            f"labels with fewer than {min_per_label} training examples: {', '.join(few)}. "
            "Label more tickets for them, merge them in the taxonomy, or lower train.min_examples_per_label")


def limit_blas_threads(env: "os._Environ[str] | dict[str, str] | None" = None) -> int:
    """Cap the BLAS thread pools (OpenBLAS in numpy / scipy) of this process, for a server.

    A decision multiplies small matrices (a 384 x labels head, a few thousand neighbours); BLAS
    threads do not speed those up, but OpenBLAS workers spin after every call waiting for the
    next one. Measured in the service (BANKING77, 8 clients, 2 cores): the spinning worker took
    more CPU than the event loop, and capping it at one thread took the server from 4.4 to
    2.2 ms of CPU per request (benchmarks/README.md). ``TRIAGE_BLAS_THREADS`` (default 1) sets
    the cap; ``0`` leaves the pools alone. Returns the cap applied (0: none)."""
    raw = (os.environ if env is None else env).get("TRIAGE_BLAS_THREADS", "1").strip() or "1"
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"TRIAGE_BLAS_THREADS={raw!r}: give a whole number of threads (0 leaves BLAS alone)") from None
    if n < 0:
        raise ValueError(f"TRIAGE_BLAS_THREADS={n}: give 0 (leave BLAS alone) or a positive number of threads")
    if n:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n, user_api="blas")  # process-wide, not a context: it stays
    return n


def available_cpus() -> int:
    """The CPUs this process may use (affinity aware: a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def encoder_threads() -> int:
    """Threads for an encoder: TRIAGE_TORCH_THREADS when set, else the CPUs this process may
    use (affinity aware), never more than those."""
    avail = available_cpus()
    env = os.environ.get("TRIAGE_TORCH_THREADS")
    return max(1, min(int(env) if env else avail, avail))
