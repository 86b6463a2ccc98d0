"""The one embedding cache: each text is embedded once per frozen encoder in this process.

``EMBEDDING_CACHE`` is a bounded LRU of embeddings keyed by (owner, variant, text). The owner
is an encoder (``models.encoder.encode(..., cache=True)``: training encodes the same texts
several times, the service sees repeated tickets) or a classifier wrapped in
:class:`CachedClassifier` (continuous evaluation: decisions, probabilities and drift share one
encoder pass). Owners are keyed by a token handed out once per live object, never by
``id()``, which Python reuses after an object is freed (a new encoder must not get the embeddings
of a dead one). Size: ``TRIAGE_EMBED_CACHE`` entries (default 50,000, about 75 MB for MiniLM;
0 disables it).
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import weakref
from typing import Any, Hashable, Sequence

import numpy as np

_tokens: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()
_pinned: dict[int, tuple[Any, int]] = {}  # objects that take no weak reference: kept alive
_counter = itertools.count()
_token_lock = threading.Lock()


def owner_token(obj: Any) -> int:
    """A number that names ``obj`` for as long as it lives and is never given to another."""
    with _token_lock:
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict):  # the token lives and dies with the object itself
            held = attrs.get("_triage_cache_token")
            if held is None or held[0] != id(obj):  # a copy carries its original's: not its own
                held = attrs["_triage_cache_token"] = (id(obj), next(_counter))
            return held[1]
        try:
            tok = _tokens.get(obj)
            if tok is None:
                tok = _tokens[obj] = next(_counter)
            return tok
        except TypeError:  # no weak references (e.g. object()): pin it so its id stays its own
            held = _pinned.get(id(obj))
            if held is None or held[0] is not obj:
                held = _pinned[id(obj)] = (obj, next(_counter))
            return held[1]


class EmbeddingStore:
    """A thread-safe bounded LRU of embeddings keyed by (owner, variant, text)."""

    def __init__(self) -> None:
        self._d: "collections.OrderedDict[tuple[int, Hashable, str], np.ndarray]" = collections.OrderedDict()
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return int(os.environ.get("TRIAGE_EMBED_CACHE", "50000"))

    def get_many(self, owner: Any, variant: Hashable, texts: Sequence[str]) -> list[np.ndarray | None]:
        tok = owner_token(owner)
        with self._lock:
            out = []
            for t in texts:
                key = (tok, variant, t)
                v = self._d.get(key)
                if v is not None:
                    self._d.move_to_end(key)
                out.append(v)
            return out

    def put_many(self, owner: Any, variant: Hashable, texts: Sequence[str], emb: np.ndarray,
                 *, overwrite: bool = True) -> None:
        cap = self.capacity
        if cap <= 0:
            return
        tok = owner_token(owner)
        with self._lock:
            for t, v in zip(texts, emb):
                key = (tok, variant, t)
                if overwrite or key not in self._d:
                    self._d[key] = v
            while len(self._d) > cap:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)


EMBEDDING_CACHE = EmbeddingStore()


class CachedClassifier:
    """Wraps a classifier so that each distinct text is embedded once (in ``EMBEDDING_CACHE``).

    ``Triage.decide`` embeds texts for the out-of-scope score and neighbours, drift needs the
    same embeddings again, and an ``embed_logreg`` model with ``normalize: true`` classifies
    exactly those embeddings (through its public ``predict_proba_embeddings``): with the
    cache one encoder pass serves all three. Everything else is delegated unchanged.
    """

    _VARIANT = "classifier.embed"

    def __init__(self, classifier: Any):
        self._clf = classifier
        self._no_embeddings = False
        self._local: dict[str, np.ndarray] = {}  # only when the shared cache is disabled
        self._dim = 0
        params = getattr(classifier, "params", None) or {}
        self._via_embeddings = (callable(getattr(classifier, "predict_proba_embeddings", None))
                                and bool(params.get("normalize", False)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clf, name)

    @property
    def wrapped(self) -> Any:
        return self._clf

    def _get(self, texts: list[str]) -> list[np.ndarray | None]:
        if EMBEDDING_CACHE.capacity <= 0:
            return [self._local.get(t) for t in texts]
        return EMBEDDING_CACHE.get_many(self._clf, self._VARIANT, texts)

    def _put(self, texts: list[str], emb: np.ndarray, overwrite: bool = True) -> None:
        if EMBEDDING_CACHE.capacity <= 0:
            for t, v in zip(texts, emb):
                if overwrite or t not in self._local:
                    self._local[t] = v
            return
        EMBEDDING_CACHE.put_many(self._clf, self._VARIANT, texts, emb, overwrite=overwrite)

    def embed(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray | None:
        texts = list(texts)
        if self._no_embeddings:
            return None
        uniq = list(dict.fromkeys(texts))
        found = dict(zip(uniq, self._get(uniq)))
        missing = [t for t, v in found.items() if v is None]
        if missing:
            emb = self._clf.embed(missing)
            if emb is None:
                self._no_embeddings = True
                return None
            emb = np.asarray(emb, dtype=np.float32)
            self._dim = emb.shape[1] if emb.ndim == 2 else self._dim
            self._put(missing, emb)
            found.update(zip(missing, emb))
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.vstack([found[t] for t in texts])

    def seed(self, texts: Sequence[str], embeddings: np.ndarray) -> None:
        """Add known embeddings (e.g. the bundle's stored training-ticket embeddings)."""
        emb = np.asarray(embeddings, dtype=np.float32)
        if len(emb) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(emb)} embeddings")
        if emb.ndim == 2 and len(emb):
            self._dim = self._dim or emb.shape[1]
        self._put(list(texts), emb, overwrite=False)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self._via_embeddings and texts:
            emb = self.embed(texts)
            if emb is not None:
                return self._clf.predict_proba_embeddings(emb)
        return self._clf.predict_proba(texts)
