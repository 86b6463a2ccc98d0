"""What the fine-tuned encoder families (``setfit``, ``transformer``) share.

* a wall-clock **budget** (``max_train_minutes``) checked between optimizer steps, so training
  stops cleanly and keeps the best checkpoint seen so far;
* the **validation** set used for early stopping: the sweep's validation split when the caller
  passes one (``fit(..., validation=(texts, labels))``), else a stratified slice of the training
  data (``val_fraction``);
* **early stopping** on validation macro-F1 (patience counted in evaluations), the best weights
  kept as a CPU copy of the state dict;
* ``max_seq_length`` **from the data**: a quantile of the training texts' token lengths, rounded
  up to a multiple of 16 and capped (long tickets keep the subject and the start of the body:
  the cleaned text starts with the subject and truncation keeps the start);
* **length-grouped batches** (sorted within shuffled mega-batches), so dynamic padding pads little;
* the fine-tuned encoder as a **sentence-transformers folder** (Transformer -> mean Pooling
  [-> Normalize]), which :mod:`ticket_triage.models.onnx_encoder` exports to ONNX / int8 like the
  frozen encoder: the same ``backend`` switch serves both.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

Validation = tuple[Sequence[str], Sequence[str]]


class Budget:
    """``max_train_minutes`` (<= 0 or None: unlimited), measured from construction."""

    def __init__(self, max_minutes: float | None):
        self.max_s = float(max_minutes) * 60.0 if max_minutes and float(max_minutes) > 0 else math.inf
        self.t0 = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0

    def expired(self) -> bool:
        return self.elapsed_s >= self.max_s


def split_validation(texts: Sequence[str], labels: Sequence[str], validation: Validation | None,
                     fraction: float, seed: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """(train_x, train_y, val_x, val_y). A given validation set is kept to the labels seen in
    training; without one, a stratified ``fraction`` of the training data is held out when every
    label keeps at least 2 examples on each side (else no validation: no early stopping)."""
    x, y = [str(t) for t in texts], [str(v) for v in labels]
    if validation is not None:
        known = set(y)
        vx = [str(t) for t, v in zip(*validation) if str(v) in known]
        vy = [str(v) for v in validation[1] if str(v) in known]
        return x, y, vx, vy
    if fraction <= 0:
        return x, y, [], []
    labs, counts = np.unique(y, return_counts=True)
    n_val = int(round(fraction * len(y)))
    if n_val < len(labs) or counts.min() < 4:
        return x, y, [], []
    from sklearn.model_selection import train_test_split

    tr, va = train_test_split(np.arange(len(y)), test_size=n_val, stratify=y, random_state=seed)
    tr, va = np.sort(tr), np.sort(va)
    return [x[i] for i in tr], [y[i] for i in tr], [x[i] for i in va], [y[i] for i in va]


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(list(y_true), list(y_pred), average="macro", zero_division=0))


class EarlyStopping:
    """Keeps the best validation score and a CPU copy of the weights that scored it."""

    def __init__(self, patience: int):
        self.patience = max(1, int(patience))
        self.best: float = -math.inf
        self.best_step: int = -1
        self.best_state: dict[str, Any] | None = None
        self.bad = 0
        self.history: list[tuple[int, float, float]] = []  # (step, score, elapsed_s)

    def update(self, score: float, step: int, model: Any, elapsed_s: float = 0.0) -> bool:
        """Record an evaluation; True when it is the best so far (its weights are copied)."""
        self.history.append((int(step), float(score), round(float(elapsed_s), 1)))
        if score > self.best + 1e-6:
            self.best, self.best_step, self.bad = float(score), int(step), 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return True
        self.bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad >= self.patience

    def restore(self, model: Any) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def max_length_from_data(tokenizer: Any, texts: Sequence[str], cap: int, quantile: float = 0.95,
                         floor: int = 32, sample: int = 2000, seed: int = 0) -> int:
    """Token length covering ``quantile`` of the texts (a sample of at most ``sample``), rounded up
    to a multiple of 16, within [floor, cap]."""
    texts = list(texts)
    if not texts:
        return int(cap)
    if len(texts) > sample:
        idx = np.random.default_rng(seed).choice(len(texts), sample, replace=False)
        texts = [texts[i] for i in idx]
    lens = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=int(cap))["input_ids"]]
    q = float(np.quantile(lens, quantile))
    return int(min(int(cap), max(int(floor), 16 * math.ceil(q / 16))))


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                           mega: int = 50) -> list[list[int]]:
    """Batches of indices: shuffle, cut into mega-batches of ``mega`` batches, sort each by length
    (longest first), cut into batches, shuffle the batch order. Similar lengths share a batch, so
    padding to the longest in the batch wastes little, and the order stays random."""
    n = len(lengths)
    order = rng.permutation(n)
    size = max(1, int(batch_size))
    batches: list[list[int]] = []
    for s in range(0, n, size * mega):
        chunk = order[s:s + size * mega]
        chunk = chunk[np.argsort([-lengths[i] for i in chunk], kind="stable")]
        batches.extend([chunk[i:i + size].tolist() for i in range(0, len(chunk), size)])
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def write_st_folder(model: Any, tokenizer: Any, path: Path, max_seq_length: int, *, normalize: bool) -> Path:
    """Save a transformers encoder as a sentence-transformers folder (Transformer -> mean
    Pooling [-> Normalize]) that ``SentenceTransformer`` and the ONNX backend both load."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": int(model.config.hidden_size), "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
    (path / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": int(max_seq_length), "do_lower_case": False}))
    return path


def onnx_encoder_for(st_dir: Path, backend: str) -> Any:
    """The ONNX Runtime encoder of a fine-tuned sentence-transformers folder, its ONNX file kept
    inside the folder (``<st_dir>/<backend>/model.onnx``) so that a saved model carries it."""
    from ticket_triage.models.onnx_encoder import OnnxSentenceEncoder

    return OnnxSentenceEncoder(st_dir, backend, onnx_dir=Path(st_dir) / backend)


def copy_state(model: Any) -> dict[str, Any]:
    return copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
