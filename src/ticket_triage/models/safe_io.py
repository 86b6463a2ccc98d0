"""Saving and loading fitted scikit-learn parts without pickle, in time linear in their size.

Why not skops: skops 0.16 writes every entry of a ``dict`` (a TF-IDF vocabulary: 100k-1M
n-grams) as its own zip member and lists the archive before each write, so saving grows
quadratically with the vocabulary (144k features: > 8 minutes). This format keeps what made
skops safe (nothing is unpickled; only an explicit list of classes can be built) and stores
the data in a handful of arrays:

* one ``.npz`` archive (numpy's zip of ``.npy`` files, read with ``allow_pickle=False``);
* ``__manifest__``: a JSON tree describing the object. Scalars, lists, tuples and small
  dicts are inline; every numeric array is a reference to an ``.npy`` member; every list of
  strings (a vocabulary, string class labels) is ONE UTF-8 blob plus one offsets array.
* an estimator node names its class; loading builds only classes in :data:`ALLOWED`
  (``cls.__new__`` + the saved attributes, all plain data); any other name raises
  :class:`UntrustedTypeError` before anything is built.

Cost: one pass over the data to write, one to read (the benchmark
``benchmarks/bench_save_load.py`` measures 10k / 100k / 1M features).
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "ticket-triage-sklearn/1"
MANIFEST = "__manifest__"

#: The only classes a file may name. All are plain containers of arrays once fitted.
ALLOWED: tuple[str, ...] = (
    "sklearn.pipeline.Pipeline",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.CountVectorizer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.preprocessing._label.LabelBinarizer",
)
_NUMERIC_KINDS = "biufc"


class UntrustedTypeError(ValueError):
    """The file names a class outside :data:`ALLOWED` (tampered or from another program)."""


def _qualname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def _ref(self, arr: np.ndarray) -> str:
        name = f"a{len(self.arrays)}"
        self.arrays[name] = np.ascontiguousarray(arr)
        return name

    def _strings(self, items: list[str]) -> dict[str, Any]:
        """Many strings as one UTF-8 blob: NUL-separated when no string holds a NUL (splits in
        one C call on load), else with an offsets array."""
        joined = "\x00".join(items)
        if items and joined.count("\x00") == len(items) - 1:
            blob = np.frombuffer(joined.encode("utf-8", "surrogatepass"), dtype=np.uint8)
            return {"text": self._ref(blob), "sep": 0, "count": len(items)}
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        blob = np.frombuffer("".join(items).encode("utf-8", "surrogatepass"), dtype=np.uint8)
        return {"text": self._ref(blob), "offsets": self._ref(offsets)}

    def enc(self, v: Any, where: str) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(v, np.generic):
            return {"__scalar__": self._ref(np.asarray(v))}
        if isinstance(v, type) and issubclass(v, np.generic):
            return {"__dtype__": np.dtype(v).str}
        if isinstance(v, np.dtype):
            return {"__dtype__": v.str, "instance": True}
        if isinstance(v, tuple):
            return {"__tuple__": [self.enc(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, list):
            if v and set(map(type, v)) == {str}:
                return {"__strlist__": self._strings(v)}
            return [self.enc(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, (set, frozenset)):
            items = sorted(v, key=repr)
            if not all(type(x) is str for x in items):
                raise TypeError(f"cannot save {where}: a set of non-strings")
            return {"__set__": self._strings(items)}
        if isinstance(v, dict):
            if set(map(type, v)) - {str}:
                raise TypeError(f"cannot save {where}: a dict with non-string keys")
            vals = np.array(list(v.values())) if v else None
            if vals is not None and vals.ndim == 1 and vals.dtype.kind in "iu":
                # a vocabulary: keys as one blob, values as one array
                return {"__vocab__": self._strings(list(v)), "values": self._ref(vals.astype(np.int64))}
            return {"__dict__": {k: self.enc(x, f"{where}.{k}") for k, x in v.items()}}
        if isinstance(v, np.ndarray):
            if v.dtype.kind in _NUMERIC_KINDS:
                return {"__array__": self._ref(v)}
            if v.dtype.kind == "U" or (v.dtype.kind == "O" and all(type(x) is str for x in v.ravel())):
                return {"__strarray__": self._strings([str(x) for x in v.ravel()]),
                        "shape": list(v.shape), "dtype": "object" if v.dtype.kind == "O" else "str"}
            raise TypeError(f"cannot save {where}: array of dtype {v.dtype}")
        name = _qualname(v)
        if name in ALLOWED:
            return {"__estimator__": name,
                    "state": {k: self.enc(x, f"{where}.{k}") for k, x in vars(v).items()}}
        raise TypeError(f"cannot save {where}: {name} is not a type this format stores "
                        f"(allowed: {', '.join(ALLOWED)})")


class _Reader:
    def __init__(self, arrays: Any) -> None:
        self.arrays = arrays

    def _arr(self, name: str) -> np.ndarray:
        if not isinstance(name, str) or name not in self.arrays:
            raise ValueError(f"array {name!r} named in the manifest is missing from the file")
        return self.arrays[name]

    def _strings(self, node: dict[str, Any]) -> list[str]:
        text = self._arr(node["text"]).tobytes().decode("utf-8", "surrogatepass")
        if node.get("sep") == 0:
            items = text.split("\x00")
            if len(items) != int(node["count"]):
                raise ValueError(f"string blob holds {len(items)} strings, the manifest says {node['count']}")
            return items
        o = self._arr(node["offsets"]).tolist()
        return [text[o[i]:o[i + 1]] for i in range(len(o) - 1)]

    def dec(self, v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.dec(x) for x in v]
        if not isinstance(v, dict) or len(v) == 0:
            raise ValueError(f"malformed manifest node: {v!r:.80}")
        tag = next(iter(v))
        if tag == "__float__":
            return float(v[tag])
        if tag == "__scalar__":
            return self._arr(v[tag])[()]
        if tag == "__dtype__":
            dt = np.dtype(v[tag])
            if dt.kind not in _NUMERIC_KINDS:
                raise ValueError(f"dtype {v[tag]!r} is not numeric")
            return dt if v.get("instance") else dt.type
        if tag == "__tuple__":
            return tuple(self.dec(x) for x in v[tag])
        if tag == "__strlist__":
            return self._strings(v[tag])
        if tag == "__set__":
            return set(self._strings(v[tag]))
        if tag == "__vocab__":
            return dict(zip(self._strings(v[tag]), self._arr(v["values"]).tolist()))
        if tag == "__dict__":
            return {str(k): self.dec(x) for k, x in v[tag].items()}
        if tag == "__array__":
            return self._arr(v[tag])
        if tag == "__strarray__":
            items = self._strings(v[tag])
            arr = np.array(items, dtype=object) if v.get("dtype") == "object" else np.array(items, dtype=str)
            return arr.reshape(v.get("shape", [len(items)]))
        if tag == "__estimator__":
            name = v[tag]
            if name not in ALLOWED:
                raise UntrustedTypeError(f"the file names the type {name!r}, which is not trusted "
                                         f"(trusted: {', '.join(ALLOWED)}); refusing to load it")
            mod, _, cls_name = name.rpartition(".")
            cls = getattr(importlib.import_module(mod), cls_name)
            obj = cls.__new__(cls)
            obj.__dict__.update({str(k): self.dec(x) for k, x in v["state"].items()})
            return obj
        raise ValueError(f"malformed manifest node with tag {tag!r}")


def dump_estimator(obj: Any, path: str | Path) -> Path:
    """Write a fitted scikit-learn object (built from :data:`ALLOWED` classes) to ``path``.

    The file appears complete or not at all (written next to it, then renamed)."""
    import sklearn

    path = Path(path)
    w = _Writer()
    root = w.enc(obj, "model")
    manifest = {"format": FORMAT, "sklearn": sklearn.__version__, "root": root}
    w.arrays[MANIFEST] = np.frombuffer(json.dumps(manifest).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **w.arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_estimator(path: str | Path) -> Any:
    """Read what :func:`dump_estimator` wrote. Never unpickles; builds only :data:`ALLOWED` types."""
    import sklearn

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the saved model is incomplete; save it again")
    try:
        with np.load(path, allow_pickle=False) as z:
            if MANIFEST not in z.files:
                raise ValueError(f"{path} is not a ticket-triage model file (no manifest)")
            manifest = json.loads(z[MANIFEST].tobytes().decode("utf-8"))
            if manifest.get("format") != FORMAT:
                raise ValueError(f"{path}: unknown format {manifest.get('format')!r} (expected {FORMAT})")
            arrays = {n: z[n] for n in z.files if n != MANIFEST}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable model file ({e}); save the model again") from e
    if manifest.get("sklearn") != sklearn.__version__:
        warnings.warn(f"{path} was saved with scikit-learn {manifest.get('sklearn')}, this is "
                      f"{sklearn.__version__}: retrain if predictions look wrong", stacklevel=2)
    return _Reader(arrays).dec(manifest["root"])


def file_size(obj: Any) -> int:
    """Bytes :func:`dump_estimator` would write (for benchmarks and reports)."""
    buf = io.BytesIO()
    w = _Writer()
    w.arrays[MANIFEST] = np.frombuffer(json.dumps({"root": w.enc(obj, "model")}).encode(), dtype=np.uint8)
    np.savez(buf, **w.arrays)
    return buf.tell()
