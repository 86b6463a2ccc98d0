"""Inference-only twin of a fitted TF-IDF + logistic-regression pipeline, without
scikit-learn's per-call overhead.

For one short ticket, ``Pipeline.predict_proba`` spends ~1.5 ms in scikit-learn's input
validation (``check_array``, parameter validation, ``set_output`` wrappers, a joblib loop over
the ``FeatureUnion``), against ~0.3 ms of actual work (n-gram counting, one sparse product).
That overhead is paid per call, so it dominates the service's one-ticket requests and the
cascade's first stage. :class:`LeanTfidfLogReg` computes the same thing from the fitted
estimators' public attributes (``build_analyzer()``, ``vocabulary_``, ``idf_``,
``sublinear_tf``, ``norm``, ``coef_``, ``intercept_``):

    counts -> (1 + log) if sublinear_tf -> * idf_ -> l2 row norm -> hstack -> @ coef_.T + b -> softmax

:meth:`LeanTfidfLogReg.from_pipeline` returns ``None`` for any configuration it does not
reproduce (binary counts, ``transformer_weights``, a norm other than l2/none, anything but
TfidfVectorizer / LogisticRegression), and checks itself against the pipeline on probe texts;
callers then keep using the pipeline. Same predictions, to float rounding (tests compare).
"""

from __future__ import annotations

import array
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["LeanTfidfLogReg", "PROBE_TEXTS", "cached_lean", "l2_rows"]

#: texts the lean twin is checked on against the pipeline when it is built
PROBE_TEXTS = ("My card payment is still pending, why?", "Passwort zurücksetzen bitte!!",
               "TypeError: cannot read property 'x' of undefined at line 42", "", "ok")


@dataclass
class _Vectorizer:
    analyzer: Callable[[str], list[str]]
    vocab: dict[str, int]
    idf: np.ndarray | None
    sublinear: bool
    l2: bool
    dtype: Any
    width: int


def _vectorizer(vec: Any) -> _Vectorizer | None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    if type(vec) is not TfidfVectorizer or vec.binary or vec.norm not in ("l2", None):
        return None
    vocab = getattr(vec, "vocabulary_", None)
    if not isinstance(vocab, dict):
        return None
    idf = np.asarray(vec.idf_, dtype=np.float64) if vec.use_idf else None
    return _Vectorizer(vec.build_analyzer(), vocab, idf,  # the fitted dict itself: no copy
                       bool(vec.sublinear_tf), vec.norm == "l2", np.dtype(vec.dtype), len(vocab))


def l2_rows(data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """The values of CSR rows (``data``, ``indptr``) scaled to unit l2 norm, in float64; an
    all-zero or empty row stays as it is (scikit-learn's ``normalize`` without its per-call
    validation)."""
    data = np.asarray(data, dtype=np.float64)
    if len(indptr) == 2:  # one row (the service's single ticket): 27 -> ~3 us, no per-row bookkeeping
        norm = math.sqrt(float(np.dot(data, data)))
        return data / norm if norm > 0 else data.copy()
    lengths = np.diff(indptr)
    sums = np.zeros(len(lengths))
    filled = lengths > 0
    if filled.any():  # the non-empty rows' starts are increasing: reduceat sums exactly their values
        sums[filled] = np.add.reduceat(data * data, np.asarray(indptr[:-1])[filled])
    norms = np.sqrt(sums)
    return data / np.repeat(np.where(norms > 0, norms, 1.0), lengths)


class LeanTfidfLogReg:
    """See the module docstring. ``transform(texts)`` -> CSR features;
    ``proba_from_features(x)`` / ``predict_proba(texts)`` -> probabilities in ``classes_`` order."""

    def __init__(self, parts: list[_Vectorizer], coef: np.ndarray, intercept: np.ndarray, classes: Any):
        self.parts = parts
        self.coef_t = np.ascontiguousarray(np.asarray(coef, dtype=np.float64).T)  # (features, k)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.classes_ = classes
        self.width = sum(p.width for p in parts)

    @classmethod
    def from_pipeline(cls, pipe: Any, probe: Sequence[str] = PROBE_TEXTS) -> "LeanTfidfLogReg | None":
        """The lean twin of ``Pipeline([(features, FeatureUnion | TfidfVectorizer), (clf,
        LogisticRegression)])``, or None where it cannot be exact (see the module docstring)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        if not isinstance(pipe, Pipeline) or len(pipe.steps) != 2:
            return None
        feats, clf = pipe.steps[0][1], pipe.steps[1][1]
        if type(clf) is not LogisticRegression or getattr(clf, "coef_", None) is None:
            return None
        if getattr(clf, "multi_class", "auto") not in ("auto", "multinomial", "deprecated"):
            return None
        if isinstance(feats, FeatureUnion):
            if feats.transformer_weights:
                return None
            vecs = [t for _, t in feats.transformer_list]
        else:
            vecs = [feats]
        parts = [_vectorizer(v) for v in vecs]
        if not parts or any(p is None for p in parts):
            return None
        lean = cls(parts, clf.coef_, clf.intercept_, clf.classes_)  # type: ignore[arg-type]
        if lean.coef_t.shape[0] != lean.width:
            return None
        texts = list(probe)
        if not np.allclose(lean.predict_proba(texts), pipe.predict_proba(texts), rtol=1e-9, atol=1e-12):
            return None
        return lean

    def transform(self, texts: Sequence[str]):
        """CSR (n, width): the FeatureUnion's TF-IDF features of ``texts``."""
        from scipy import sparse

        n = len(texts)
        dtype = np.result_type(*[p.dtype for p in self.parts])
        blocks = [self._block(part, texts) for part in self.parts]
        if n == 1 or len(blocks) == 1:  # one row (the service's case): concatenate, no stacking
            offsets = np.cumsum([0] + [p.width for p in self.parts[:-1]])
            data = np.concatenate([b[0] for b in blocks]).astype(dtype, copy=False)
            cols = np.concatenate([b[1] + off for b, off in zip(blocks, offsets)])
            indptr = np.sum([b[2] for b in blocks], axis=0)
            return sparse.csr_matrix((data, cols, indptr), shape=(n, self.width))
        return sparse.hstack([sparse.csr_matrix(b, shape=(n, p.width)) for b, p in zip(blocks, self.parts)],
                             format="csr").astype(dtype, copy=False)

    @staticmethod
    def _block(part: _Vectorizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(data, column indices, indptr) of one vectorizer's TF-IDF rows."""
        n = len(texts)
        indptr = np.zeros(n + 1, dtype=np.int64)
        # typed arrays, as scikit-learn's own counting: a Python list of the 62M non-zeros of
        # 16k long tickets would take ~2 GB more than these
        indices = array.array("q")
        values = array.array("l")
        vocab, analyzer = part.vocab, part.analyzer
        for i, doc in enumerate(texts):
            counts: dict[int, int] = {}
            for feat in analyzer(doc):
                j = vocab.get(feat)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            indices.extend(counts)
            values.extend(counts.values())
            indptr[i + 1] = len(indices)
        cols = np.frombuffer(indices, dtype=np.int64) if len(indices) else np.zeros(0, np.int64)
        data = np.asarray(values, dtype=np.float64)
        if part.sublinear:
            np.log(data, out=data)
            data += 1.0
        if part.idf is not None:
            data *= part.idf[cols]
        if part.l2:
            data = l2_rows(data, indptr)
        return data.astype(part.dtype, copy=False), cols, indptr

    def proba_from_features(self, x: Any) -> np.ndarray:
        d = np.asarray(x @ self.coef_t) + self.intercept
        if d.shape[1] == 1:  # binary: sklearn's [1 - p, p]
            p = 1.0 / (1.0 + np.exp(-d[:, 0]))
            return np.column_stack([1.0 - p, p])
        d -= d.max(axis=1, keepdims=True)
        np.exp(d, out=d)
        d /= d.sum(axis=1, keepdims=True)
        return d

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.classes_)))
        return self.proba_from_features(self.transform(texts))


def cached_lean(owner: Any, pipeline: Any) -> LeanTfidfLogReg | None:
    """The lean twin of ``pipeline``, built once and kept on ``owner`` (built again when
    ``owner`` holds another pipeline object, e.g. after a refit); None where it cannot be exact."""
    cached = owner.__dict__.get("_lean_twin")
    if cached is None or cached[0] is not pipeline:
        cached = owner.__dict__["_lean_twin"] = (pipeline, LeanTfidfLogReg.from_pipeline(pipeline))
    return cached[1]
