"""Fine-tuned transformer: the MiniLM encoder (transformers ``AutoModel``) + mean pooling + a
linear classification head, trained end to end with cross-entropy in a plain torch loop.

``pretrained: default`` is the packaged all-MiniLM-L6-v2 (trained with mean pooling, so the
head reads the mean-pooled tokens, not BERT's untrained [CLS] pooler); a local directory or a
hub name (where the hub is reachable or cached) works too. The loop is built for a CPU budget
(:mod:`ticket_triage.models.finetune`): ``max_length`` from the data, texts tokenized once,
length-grouped batches with dynamic padding, AdamW with linear warm-up and decay, gradient
accumulation, torch threads set, early stopping on validation macro-F1 (best weights kept) and a
``max_train_minutes`` budget that stops cleanly with the best checkpoint. ``device: cuda`` trains
on a GPU (bf16 autocast); nothing requires one.

Serving: the encoder is saved as a sentence-transformers folder (``model/``, safetensors, the
tokenizer, ``config.json`` with ``id2label``) and the head as ``head.safetensors``; ``backend``
``onnx`` / ``onnx-int8`` runs the encoder through :mod:`ticket_triage.models.onnx_encoder` like
the frozen one (the ONNX file saved inside ``model/<backend>/``) and the head in numpy, so the
classifier, the out-of-scope score and the neighbours all use the fine-tuned embeddings.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ticket_triage.models.base import Classifier, check_training_data, merged_params, progress_bar

log = logging.getLogger(__name__)

MODEL_DIR = "model"
HEAD_FILE = "head.safetensors"
INFO_FILE = "train_info.json"

DEFAULTS: dict[str, Any] = {
    "pretrained": "default",
    "backend": "torch",        # what runs the encoder after training: torch | onnx | onnx-int8
    "max_length": "auto",      # tokens (int), or auto: 95th percentile of the training texts
    "max_length_cap": 256,
    "epochs": 10,
    "batch_size": 16,
    "grad_accum": 1,           # optimizer step every grad_accum batches (effective batch = product)
    "learning_rate": 5.0e-5,
    "head_learning_rate": 1.0e-3,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "dropout": 0.1,
    "max_steps": -1,           # > 0 stops after that many optimizer steps (tests)
    "eval_every": 0,           # optimizer steps between validation evaluations; 0 = once per epoch
    "patience": 3,             # evaluations without a better validation macro-F1
    "val_fraction": 0.15,      # held out for early stopping when fit() gets no validation set
    "max_train_minutes": 15.0,  # wall-clock budget (<= 0: none); stops cleanly, keeps the best
    "eval_batch_size": 64,
    "seed": 42,
    "device": "cpu",           # "cpu", "cuda", "cuda:0" or "auto"
}


def _module(encoder: Any, n_labels: int, dropout: float) -> Any:
    import torch

    class MeanPoolClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.dropout = torch.nn.Dropout(dropout)
            self.classifier = torch.nn.Linear(int(encoder.config.hidden_size), n_labels)

        def pooled(self, input_ids, attention_mask):  # noqa: D401 - torch API
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

        def forward(self, input_ids, attention_mask):  # noqa: D401 - torch API
            pooled = self.pooled(input_ids, attention_mask)
            return self.classifier(self.dropout(pooled)), pooled

    return MeanPoolClassifier()


class TransformerClassifier(Classifier):
    """A fine-tuned encoder with a mean-pooled linear classification head."""

    family = "transformer"
    uses_validation = True

    def __init__(self, **params: Any):
        from ticket_triage.models.encoder import BACKENDS

        super().__init__(**merged_params(DEFAULTS, params, self.family))
        if self.params["backend"] not in BACKENDS:
            raise ValueError(f"transformer: backend must be one of {', '.join(BACKENDS)}, "
                             f"got {self.params['backend']!r}")
        pre = self.params["pretrained"]
        if pre and pre != "default" and Path(str(pre)).expanduser().is_dir():
            self.params["pretrained"] = str(Path(pre).expanduser().resolve())
        self.model = None          # MeanPoolClassifier (torch backend, training)
        self.tokenizer = None
        self.runner = None         # OnnxSentenceEncoder (onnx backends)
        self.W: np.ndarray | None = None   # head weights for the numpy path (n_labels, dim)
        self.b: np.ndarray | None = None
        self.model_dir: Path | None = None
        self.max_length: int = 0
        self.train_info: dict[str, Any] = {}

    # -- helpers -----------------------------------------------------------------------------
    def _source(self) -> str:
        import os

        from ticket_triage.models.encoder import resolve_encoder

        if self.params["pretrained"] in ("default", "", None):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return resolve_encoder(self.params["pretrained"] or "default")

    def _pad(self, seqs: list[list[int]], device: str) -> tuple[Any, Any]:
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, :len(s)] = 1
        return ids.to(device), mask.to(device)

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer([str(t) for t in texts], truncation=True, max_length=self.max_length)["input_ids"]

    def _torch_forward(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(logits, pooled) in float64 / float32 for texts, batched by length (little padding)."""
        import torch

        seqs = self._ids(texts)
        dev = next(self.model.parameters()).device
        order = np.argsort([-len(s) for s in seqs], kind="stable")
        n_lab = self.model.classifier.out_features
        logits = np.zeros((len(seqs), n_lab))
        pooled = np.zeros((len(seqs), self.model.classifier.in_features), dtype=np.float32)
        bs = int(self.params["eval_batch_size"])
        was = self.model.training
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(seqs), bs):
                idx = order[s:s + bs]
                lo, po = self.model(*self._pad([seqs[i] for i in idx], str(dev)))
                logits[idx] = lo.double().cpu().numpy()
                pooled[idx] = po.float().cpu().numpy()
        self.model.train(was)
        return logits, pooled

    # -- training ----------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[str], *, progress: bool = True,
            validation: tuple[Sequence[str], Sequence[str]] | None = None) -> "TransformerClassifier":
        check_training_data(texts, labels)
        import torch
        from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup, set_seed

        from ticket_triage.models.encoder import configure_torch_threads, resolve_device
        from ticket_triage.models.finetune import (Budget, EarlyStopping, length_grouped_batches, macro_f1,
                                                   max_length_from_data, split_validation)

        p = self.params
        seed = int(p["seed"])
        budget = Budget(p["max_train_minutes"])
        configure_torch_threads()
        set_seed(seed)
        tx, ty, vx, vy = split_validation(texts, labels, validation, float(p["val_fraction"]), seed)
        self.labels = sorted(set(ty))
        label2id = {lab: i for i, lab in enumerate(self.labels)}
        src = self._source()
        self.tokenizer = AutoTokenizer.from_pretrained(src)
        cap = int(p["max_length_cap"])
        self.max_length = (max_length_from_data(self.tokenizer, tx, cap, seed=seed) if p["max_length"] == "auto"
                           else int(p["max_length"]))
        encoder = AutoModel.from_pretrained(src)
        encoder.config.id2label = dict(enumerate(self.labels))
        encoder.config.label2id = label2id
        self.model = _module(encoder, len(self.labels), float(p["dropout"]))
        device = resolve_device(str(p["device"]))
        self.model.to(device)
        use_amp = device.startswith("cuda")

        seqs = self._ids(tx)
        lengths = [len(s) for s in seqs]
        y = torch.tensor([label2id[v] for v in ty], dtype=torch.long)
        bs, accum = int(p["batch_size"]), max(1, int(p["grad_accum"]))
        per_epoch = math.ceil(math.ceil(len(seqs) / bs) / accum)
        total = int(p["max_steps"]) if int(p["max_steps"]) > 0 else per_epoch * int(p["epochs"])
        eval_every = int(p["eval_every"]) if int(p["eval_every"]) > 0 else per_epoch
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        named = list(self.model.named_parameters())
        groups = [
            {"params": [w for n, w in named if n.startswith("encoder.") and not any(k in n for k in no_decay)],
             "weight_decay": float(p["weight_decay"]), "lr": float(p["learning_rate"])},
            {"params": [w for n, w in named if n.startswith("encoder.") and any(k in n for k in no_decay)],
             "weight_decay": 0.0, "lr": float(p["learning_rate"])},
            {"params": [w for n, w in named if not n.startswith("encoder.")],
             "weight_decay": 0.0, "lr": float(p["head_learning_rate"])},
        ]
        opt = torch.optim.AdamW(groups)
        sched = get_linear_schedule_with_warmup(opt, int(float(p["warmup_ratio"]) * total), total)
        rng = np.random.default_rng(seed)
        stopper = EarlyStopping(int(p["patience"]))
        info: dict[str, Any] = {"max_length": self.max_length, "planned_steps": total, "eval_every": eval_every,
                                "train_examples": len(seqs), "val_examples": len(vx), "device": device,
                                "stopped": "completed"}

        def evaluate(step: int) -> None:
            if not vx:
                return
            logits, _ = self._torch_forward(vx)
            score = macro_f1(vy, [self.labels[i] for i in logits.argmax(1)])
            stopper.update(score, step, self.model, budget.elapsed_s)
            if progress:
                log.info("transformer: step %d/%d, validation macro-F1 %.4f (best %.4f at step %d), %.0f s",
                         step, total, score, stopper.best, stopper.best_step, budget.elapsed_s)

        self.model.train()
        step, micro = 0, 0
        bar = progress_bar(total=total, desc="fine-tuning", unit="step", progress=progress)
        stop = None
        while stop is None:
            for batch in length_grouped_batches(lengths, bs, rng):
                ids, mask = self._pad([seqs[i] for i in batch], device)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                    logits, _ = self.model(ids, mask)
                loss = torch.nn.functional.cross_entropy(logits.float(), y[batch].to(device)) / accum
                loss.backward()
                micro += 1
                if micro % accum:
                    continue
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{loss.item() * accum:.4f}")
                if budget.expired():
                    stop = "budget"
                elif step >= total:
                    stop = "max_steps" if int(p["max_steps"]) > 0 else "completed"
                if step % eval_every == 0 or stop:
                    evaluate(step)
                    if stop is None and stopper.should_stop:
                        stop = "early_stopping"
                if stop:
                    break
        bar.close()
        stopper.restore(self.model)
        self.model.eval()
        info.update({"stopped": stop, "steps": step, "seconds": round(budget.elapsed_s, 1),
                     "best_step": stopper.best_step,
                     "best_val_macro_f1": None if stopper.best_state is None else round(stopper.best, 4),
                     "history": stopper.history})
        self.train_info = info
        self._prepare_runner()
        return self

    def _head_arrays(self) -> None:
        self.W = self.model.classifier.weight.detach().float().cpu().numpy().astype(np.float64)
        self.b = self.model.classifier.bias.detach().float().cpu().numpy().astype(np.float64)

    def _prepare_runner(self) -> None:
        """After training: with an ONNX backend, write the encoder to a work folder and export it."""
        self._head_arrays()
        if self.params["backend"] == "torch":
            return
        from ticket_triage.models.finetune import onnx_encoder_for, write_st_folder

        work = Path(tempfile.mkdtemp(prefix="transformer-"))
        weakref.finalize(self, shutil.rmtree, str(work), True)
        self.model_dir = write_st_folder(self.model.encoder.to("cpu"), self.tokenizer, work / MODEL_DIR,
                                         self.max_length, normalize=False)
        self.runner = onnx_encoder_for(self.model_dir, self.params["backend"])

    # -- prediction --------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.W is None or (self.model is None and self.runner is None):
            raise RuntimeError("transformer: the model is not trained; call fit() or load_classifier() first")

    def _pooled(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled (not normalized) fine-tuned embeddings, by the configured backend."""
        from ticket_triage.models.encoder import encode

        if self.runner is not None:
            return encode(texts, self.runner, batch_size=int(self.params["eval_batch_size"]), normalize=False,
                          progress=False, cache=True)
        return self._torch_forward(texts)[1]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._require_fitted()
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, len(self.labels)))
        logits = self._pooled(texts).astype(np.float64) @ self.W.T + self.b
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled fine-tuned embeddings, L2-normalized, float32."""
        self._require_fitted()
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.W.shape[1]), dtype=np.float32)
        x = self._pooled(texts).astype(np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    # -- persistence -------------------------------------------------------------------------
    def _save_weights(self, path: Path) -> None:
        from safetensors.numpy import save_file

        from ticket_triage.models.finetune import write_st_folder

        self._require_fitted()
        target = path / MODEL_DIR
        if self.model_dir is not None:
            if self.model_dir.resolve() != target.resolve():
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(self.model_dir, target)   # the weights and the exported ONNX file
        else:
            write_st_folder(self.model.encoder, self.tokenizer, target, self.max_length, normalize=False)
        save_file({"weight": self.W, "bias": self.b}, str(path / HEAD_FILE))
        (path / INFO_FILE).write_text(json.dumps(self.train_info, indent=2))

    @classmethod
    def _load_weights(cls, path: Path, params: dict[str, Any]) -> "TransformerClassifier":
        from safetensors.numpy import load_file

        d = path / MODEL_DIR
        if not (d / "config.json").is_file() or not (path / HEAD_FILE).is_file():
            raise FileNotFoundError(f"{d} or {path / HEAD_FILE} is missing: the saved transformer is incomplete; "
                                    "save it again")
        clf = cls(**params)
        head = load_file(str(path / HEAD_FILE))
        clf.W, clf.b = head["weight"], head["bias"]
        clf.max_length = int(json.loads((d / "sentence_bert_config.json").read_text())["max_seq_length"])
        if (path / INFO_FILE).is_file():
            clf.train_info = json.loads((path / INFO_FILE).read_text())
        cfg = json.loads((d / "config.json").read_text())
        clf.labels = [cfg["id2label"][str(i)] for i in range(len(cfg["id2label"]))]
        if clf.params["backend"] == "torch":
            import torch
            from transformers import AutoModel, AutoTokenizer

            from ticket_triage.models.encoder import configure_torch_threads, resolve_device

            configure_torch_threads()
            clf.tokenizer = AutoTokenizer.from_pretrained(str(d))
            clf.model = _module(AutoModel.from_pretrained(str(d)), len(clf.labels), float(clf.params["dropout"]))
            with torch.no_grad():
                clf.model.classifier.weight.copy_(torch.from_numpy(clf.W))
                clf.model.classifier.bias.copy_(torch.from_numpy(clf.b))
            clf.model.to(resolve_device(str(clf.params["device"]), fallback=True))
            clf.model.eval()
        else:
            from ticket_triage.models.finetune import onnx_encoder_for

            clf.model_dir = d
            clf.runner = onnx_encoder_for(d, clf.params["backend"])
        return clf
