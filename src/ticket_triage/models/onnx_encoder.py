"""ONNX Runtime backend for frozen sentence encoders (the fast CPU path).

A mean-pooled sentence-transformers encoder (the packaged all-MiniLM-L6-v2 is one) is
exported once with ``torch.onnx.export`` into a cache folder and then run by ONNX Runtime,
with the model's own ``tokenizer.json`` through the ``tokenizers`` library:

* ``onnx``: the same float32 weights; embeddings match the torch backend to ~1e-6 (cosine
  1.00000 on BANKING77), several times faster on one ticket (no eager-mode overhead);
* ``onnx-int8``: weights quantized to int8 per channel (``onnxruntime.quantization``),
  another ~2x faster; embeddings move slightly (mean cosine to float32 ~0.994), so a model
  must be trained and served with the same backend. ``backend`` is a hyperparameter of the
  embedding families and is saved with the model, which guarantees that.

Cache: ``$TRIAGE_CACHE_DIR/onnx/<key>/model.onnx`` (default ``~/.cache/ticket-triage``), the
key hashing the encoder directory, its weights' size and mtime, the variant and the
torch/onnxruntime versions. Export takes a few seconds and happens on first use only, never
at import. Threads: ``TRIAGE_TORCH_THREADS`` or the CPUs this process may use, as for torch.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

VARIANTS = ("onnx", "onnx-int8")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TOKENS_PER_RUN = 256  # padded tokens per session.run; see OnnxSentenceEncoder._runs


class OnnxExportError(RuntimeError):
    """The encoder cannot be run by the ONNX backend (say which backend to use instead)."""


def cache_dir() -> Path:
    return Path(os.environ.get("TRIAGE_CACHE_DIR") or Path.home() / ".cache" / "ticket-triage")


def _st_config(model_dir: Path) -> tuple[int, bool]:
    """(max_seq_length, normalizes) of a sentence-transformers folder; refuses what the ONNX
    graph does not reproduce (anything but Transformer -> mean Pooling [-> Normalize])."""
    modules = json.loads((model_dir / "modules.json").read_text()) if (model_dir / "modules.json").is_file() else []
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k not in ("Normalize",) for k in kinds[2:]):
        raise OnnxExportError(f"{model_dir}: modules {kinds or 'unknown'}; the ONNX backend runs "
                              "Transformer -> mean Pooling [-> Normalize] encoders only: use backend: torch")
    pool_dir = model_dir / modules[1].get("path", "1_Pooling")
    pool = json.loads((pool_dir / "config.json").read_text()) if (pool_dir / "config.json").is_file() else {}
    mode = pool.get("pooling_mode") or ("mean" if pool.get("pooling_mode_mean_tokens", True) else "other")
    if mode != "mean":
        raise OnnxExportError(f"{model_dir}: pooling {mode!r}; the ONNX backend does mean pooling only: use backend: torch")
    if not (model_dir / "tokenizer.json").is_file():
        raise OnnxExportError(f"{model_dir}: no tokenizer.json (a fast tokenizer): use backend: torch")
    st = json.loads((model_dir / "sentence_bert_config.json").read_text()) \
        if (model_dir / "sentence_bert_config.json").is_file() else {}
    return int(st.get("max_seq_length") or 256), "Normalize" in kinds


def _key(model_dir: Path, variant: str) -> str:
    from importlib.metadata import version

    w = next((model_dir / f for f in ("model.safetensors", "pytorch_model.bin") if (model_dir / f).is_file()), None)
    stat = (w.stat().st_size, int(w.stat().st_mtime)) if w is not None else (0, 0)
    raw = json.dumps([str(model_dir.resolve()), stat, variant, version("torch"), version("onnxruntime")])
    return hashlib.sha1(raw.encode()).hexdigest()[:16]


def export(model_dir: str | Path, variant: str = "onnx", out_dir: str | Path | None = None) -> Path:
    """The ONNX file for ``model_dir`` (exported on first use, then read from the cache)."""
    if variant not in VARIANTS:
        raise ValueError(f"ONNX variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    model_dir = Path(model_dir)
    _st_config(model_dir)
    out = Path(out_dir) if out_dir else cache_dir() / "onnx" / _key(model_dir, variant)
    target = out / "model.onnx"
    if target.is_file():
        return target
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _export_fp32(model_dir, fp32)
        if variant == "onnx-int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            q = Path(tmp) / "int8.onnx"
            root = logging.getLogger()
            was, root.disabled = root.disabled, True  # its "consider pre-processing" warning is noise here
            try:
                quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8, per_channel=True)
            finally:
                root.disabled = was
            fp32 = q
        os.replace(fp32, target)  # atomic: a concurrent reader sees the old state or the whole file
    log.info("exported %s (%s) to %s", model_dir, variant, target)
    return target


def _export_fp32(model_dir: Path, path: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        raise OnnxExportError(f"{model_dir}: {type(model).__name__} takes no token_type_ids; the ONNX backend "
                              "exports BERT-style encoders only: use backend: torch")

    class _MeanPooled(torch.nn.Module):
        def __init__(self, m: Any):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: D401 - torch API
            h = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    import warnings

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    # the tracer warns about Python-level branches in transformers' masking code; for a
    # bidirectional encoder they are constant, and tests compare the export with torch
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_MeanPooled(model), (ids, mask, torch.zeros_like(ids)), str(path), dynamo=False,
                          input_names=list(_INPUTS), output_names=["embedding"], opset_version=17,
                          dynamic_axes={**{k: {0: "batch", 1: "tokens"} for k in _INPUTS}, "embedding": {0: "batch"}})


class OnnxSentenceEncoder:
    """Drop-in for the part of ``SentenceTransformer`` that ``encoder.encode`` uses."""

    def __init__(self, model_dir: str | Path, variant: str = "onnx", onnx_dir: str | Path | None = None):
        """``onnx_dir``: where the ONNX file lives (exported there when missing); default the
        shared cache. Fine-tuned encoders keep theirs inside the saved model."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from ticket_triage.models.base import encoder_threads

        self.model_dir = Path(model_dir)
        self.variant = variant
        self.max_seq_length, self._normalizes = _st_config(self.model_dir)
        self.path = export(self.model_dir, variant, out_dir=onnx_dir)
        so = ort.SessionOptions()
        so.intra_op_num_threads = encoder_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # a service shares its cores with the HTTP stack: idle threads must sleep, not spin
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        self._dim = int(self.session.get_outputs()[0].shape[-1])
        tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        tok.enable_truncation(max_length=self.max_seq_length)
        tok.no_padding()
        self.tokenizer = tok
        self.tokens_per_run = TOKENS_PER_RUN

    def get_embedding_dimension(self) -> int:
        return self._dim

    def __repr__(self) -> str:
        return f"OnnxSentenceEncoder({self.model_dir.name}, {self.variant}, {self.path})"

    def _run(self, encs: Sequence[Any]) -> np.ndarray:
        n, width = len(encs), max(len(e.ids) for e in encs)
        ids = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                       "token_type_ids": np.zeros_like(ids)})[0]

    def _runs(self, widths: Sequence[int], batch_size: int) -> list[tuple[int, int]]:
        """Cut texts sorted longest first into runs of at most ``batch_size`` texts and about
        ``tokens_per_run`` padded tokens. Small runs pay: ONNX Runtime's int8 kernels on 2 cores
        did 1.5x as many BANKING77 texts/s and 1.7x as many GitHub issues/s in runs of ~256
        tokens as in batches of 64 (less padding; benchmarks/bench_encoder.py); a 256-token
        issue is a run of its own."""
        out, s = [], 0
        while s < len(widths):
            e = s + min(batch_size, max(1, self.tokens_per_run // max(1, widths[s])))
            out.append((s, min(e, len(widths))))
            s = e
        return out

    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize_embeddings: bool = False,
               show_progress_bar: bool = False, convert_to_numpy: bool = True, **_: Any) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        encs = self.tokenizer.encode_batch(texts)
        order = np.argsort([-len(e.ids) for e in encs], kind="stable")  # little padding per batch
        runs = self._runs([len(encs[i].ids) for i in order], max(1, int(batch_size)))
        if show_progress_bar:  # a bar on a terminal, periodic log lines otherwise
            from ticket_triage.models.base import progress_bar

            runs = progress_bar(runs, desc=f"encode {len(texts)} texts (onnx)", unit="run")
        for s, e in runs:
            idx = order[s:e]
            out[idx] = self._run([encs[i] for i in idx])
        if normalize_embeddings or self._normalizes:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
