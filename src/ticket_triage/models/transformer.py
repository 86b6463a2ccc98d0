"""Fine-tuned transformer (``AutoModelForSequenceClassification``), plain torch training loop.

``pretrained: default`` is the packaged all-MiniLM-L6-v2 checkpoint (a BertModel: its
classification head is newly initialised, which transformers reports and which is expected).
A hub name such as ``distilbert-base-uncased`` works where the hub is reachable or cached, and
a local directory is used as is. Saved as ``model/`` (``save_pretrained``, safetensors, with
the tokenizer and id2label).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ticket_triage.models.base import Classifier, check_training_data, merged_params, progress_bar
from ticket_triage.models.encoder import resolve_device

MODEL_DIR = "model"

DEFAULTS: dict[str, Any] = {
    "pretrained": "default",
    "max_length": 128,
    "epochs": 3,
    "batch_size": 32,
    "learning_rate": 5.0e-5,
    "weight_decay": 0.01,
    "warmup_ratio": 0.06,
    "max_steps": -1,          # > 0 stops after that many optimizer steps (tests, CPU benchmarks)
    "eval_batch_size": 64,
    "seed": 42,
    "device": "cpu",          # "cpu", "cuda", "cuda:0" or "auto"
}


class TransformerClassifier(Classifier):
    """A fine-tuned encoder with a sequence-classification head."""

    family = "transformer"

    def __init__(self, **params: Any):
        super().__init__(**merged_params(DEFAULTS, params, self.family))
        pre = self.params["pretrained"]
        if pre and pre != "default" and Path(str(pre)).expanduser().is_dir():
            self.params["pretrained"] = str(Path(pre).expanduser().resolve())
        self.model = None
        self.tokenizer = None

    # -- helpers -----------------------------------------------------------------------------
    def _source(self) -> str:
        import os

        from ticket_triage.models.encoder import resolve_encoder

        if self.params["pretrained"] in ("default", "", None):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return resolve_encoder(self.params["pretrained"] or "default")

    def _batches(self, texts: list[str], size: int):
        for i in range(0, len(texts), size):
            yield texts[i:i + size]

    def _tokenize(self, texts: list[str]) -> dict:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=int(self.params["max_length"]),
                             return_tensors="pt")
        dev = next(self.model.parameters()).device
        return {k: v.to(dev) for k, v in enc.items()}

    # -- training ----------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[str], *, progress: bool = True) -> "TransformerClassifier":
        check_training_data(texts, labels)
        import torch
        from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                                  get_linear_schedule_with_warmup, set_seed)

        from ticket_triage.models.encoder import configure_torch_threads

        p = self.params
        seed = int(p["seed"])
        configure_torch_threads()
        set_seed(seed)
        self.labels = sorted({str(y) for y in labels})
        label2id = {lab: i for i, lab in enumerate(self.labels)}
        src = self._source()
        self.tokenizer = AutoTokenizer.from_pretrained(src)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            src, num_labels=len(self.labels), id2label=dict(enumerate(self.labels)), label2id=label2id)
        device = resolve_device(str(p["device"]))
        self.model.to(device)

        x = [str(t) for t in texts]
        y = torch.tensor([label2id[str(v)] for v in labels], dtype=torch.long)
        bs = int(p["batch_size"])
        per_epoch = math.ceil(len(x) / bs)
        total = int(p["max_steps"]) if int(p["max_steps"]) > 0 else per_epoch * int(p["epochs"])
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        groups = [
            {"params": [w for n, w in self.model.named_parameters() if not any(k in n for k in no_decay)],
             "weight_decay": float(p["weight_decay"])},
            {"params": [w for n, w in self.model.named_parameters() if any(k in n for k in no_decay)],
             "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=float(p["learning_rate"]))
        sched = get_linear_schedule_with_warmup(opt, int(float(p["warmup_ratio"]) * total), total)
        gen = torch.Generator().manual_seed(seed)
        self.model.train()
        step = 0
        bar = progress_bar(total=total, desc="fine-tuning", unit="step", progress=progress)
        while step < total:
            order = torch.randperm(len(x), generator=gen).tolist()
            for i in range(0, len(order), bs):
                idx = order[i:i + bs]
                batch = self._tokenize([x[j] for j in idx])
                out = self.model(**batch, labels=y[idx].to(device))
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{out.loss.item():.4f}")
                if step >= total:
                    break
        bar.close()
        self.model.eval()
        return self

    # -- prediction --------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.model is None or self.tokenizer is None:
            raise RuntimeError("transformer: the model is not trained; call fit() or load_classifier() first")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._require_fitted()
        import torch

        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, len(self.labels)))
        self.model.eval()
        out = []
        with torch.inference_mode():
            for chunk in self._batches(texts, int(self.params["eval_batch_size"])):
                logits = self.model(**self._tokenize(chunk)).logits
                out.append(torch.softmax(logits.double(), dim=-1).cpu().numpy())
        return np.concatenate(out)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled last hidden state (mask-aware), L2-normalized, float32."""
        self._require_fitted()
        import torch

        texts = [str(t) for t in texts]
        dim = int(self.model.config.hidden_size)
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        self.model.eval()
        out = []
        with torch.inference_mode():
            for chunk in self._batches(texts, int(self.params["eval_batch_size"])):
                batch = self._tokenize(chunk)
                hidden = self.model(**batch, output_hidden_states=True).hidden_states[-1]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out)

    # -- persistence -------------------------------------------------------------------------
    def _save_weights(self, path: Path) -> None:
        self._require_fitted()
        self.model.save_pretrained(str(path / MODEL_DIR))  # safetensors (the only format in transformers 5)
        self.tokenizer.save_pretrained(str(path / MODEL_DIR))

    @classmethod
    def _load_weights(cls, path: Path, params: dict[str, Any]) -> "TransformerClassifier":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ticket_triage.models.encoder import configure_torch_threads

        d = path / MODEL_DIR
        if not (d / "config.json").is_file():
            raise FileNotFoundError(f"{d} is missing or incomplete: the saved transformer has no weights; save it again")
        configure_torch_threads()
        clf = cls(**params)
        clf.tokenizer = AutoTokenizer.from_pretrained(str(d))
        clf.model = AutoModelForSequenceClassification.from_pretrained(str(d))
        clf.model.to(resolve_device(str(clf.params["device"]), fallback=True))
        clf.model.eval()
        clf.labels = [clf.model.config.id2label[i] for i in range(clf.model.config.num_labels)]
        return clf
