"""SetFit (contrastive fine-tuning of a sentence-transformer body) + logistic regression head.

Uses the setfit 1.2 ``Trainer`` on the packaged MiniLM body by default, built to converge on a
CPU budget (:mod:`ticket_triage.models.finetune`):

* pairs are sampled per label (setfit's ``ContrastiveDataset``: ``num_iterations`` positive and
  negative pairs per example); ``num_iterations: auto`` spends ``pair_budget`` pairs (at most
  ``max_iterations`` per example), ``max_steps: auto`` caps the phase at one pass over them;
* ``max_seq_length`` from the data (``max_length: auto``, capped by ``max_length_cap``);
* length-grouped pair batches (dynamic padding pads to the longest pair in a batch);
* early stopping on validation macro-F1, evaluated every ``eval_steps`` with a quick logistic
  head, best body kept; ``max_train_minutes`` stops cleanly with the best body;
* then the logistic head on the chosen body's embeddings of the training texts.

``backend`` (``torch`` | ``onnx`` | ``onnx-int8``) says what runs the fine-tuned body after
training, as for the frozen encoder: with ``onnx*`` the head is fitted on the ONNX embeddings,
and the saved model carries the ONNX file. Saved as ``body/`` (a sentence-transformers folder,
safetensors, plus ``body/<backend>/model.onnx``), ``head.npz`` (the scikit-learn head through
:mod:`ticket_triage.models.safe_io`, never pickle/joblib) and ``train_info.json``.
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

from ticket_triage.models.base import (
    Classifier,
    check_training_data,
    load_sklearn,
    merged_params,
    progress_bar,
    progress_enabled,
    save_sklearn,
)

log = logging.getLogger(__name__)

BODY_DIR = "body"
HEAD_FILE = "head.npz"
LEGACY_HEAD_FILE = "head.skops"  # saved by versions before safe_io: still loads
INFO_FILE = "train_info.json"
TRUSTED_TYPES: list[str] = ["sklearn.linear_model._logistic.LogisticRegression"]

DEFAULTS: dict[str, Any] = {
    "encoder": "default",
    "backend": "torch",          # what runs the tuned body after training: torch | onnx | onnx-int8
    "num_iterations": "auto",    # pairs per example (int), or auto: pair_budget / (2 n), 1..max_iterations
    "pair_budget": 12000,
    "max_iterations": 20,
    "sampling_strategy": "oversampling",
    "num_epochs": 1,
    "batch_size": 16,
    "body_learning_rate": 2.0e-5,
    "warmup_ratio": 0.1,
    "max_steps": -1,             # > 0 caps the contrastive phase (a test runs a few steps)
    "max_length": "auto",        # tokens (int), or auto: 95th percentile of the training texts
    "max_length_cap": 256,
    "eval_steps": "auto",        # steps between validation evaluations; auto: ~8 per run, >= 20
    "patience": 3,               # evaluations without a better validation macro-F1
    "val_fraction": 0.15,        # held out for early stopping when fit() gets no validation set
    "max_train_minutes": 15.0,   # wall-clock budget of the contrastive phase (<= 0: none)
    "head_C": 10.0,
    "head_max_iter": 3000,
    "class_weight": None,
    "normalize": True,           # head features L2-normalized (MiniLM's body normalizes anyway)
    "seed": 42,
    "device": "cpu",
}


def _length_sampler(seed: int) -> Any:
    """A sentence-transformers batch sampler class that groups pairs of similar length."""
    from sentence_transformers.base.sampler import DefaultBatchSampler

    from ticket_triage.models.finetune import length_grouped_batches

    class LengthGroupedPairs(DefaultBatchSampler):
        def __init__(self, dataset: Any, batch_size: int, drop_last: bool, **kw: Any):
            super().__init__(dataset, batch_size=batch_size, drop_last=drop_last, **kw)
            cols = [c for c in ("sentence_1", "sentence_2") if c in dataset.column_names]
            self.lengths = [sum(len(str(dataset[c][i])) for c in cols) for i in range(len(dataset))] \
                if cols else [0] * len(dataset)

        def __iter__(self):
            rng = np.random.default_rng(seed + int(getattr(self, "epoch", 0)))
            for b in length_grouped_batches(self.lengths, self.batch_size, rng):
                if self.drop_last and len(b) < self.batch_size:
                    continue
                yield b

    return LengthGroupedPairs


class SetFitClassifier(Classifier):
    """SetFit on a sentence-transformer body; ``embed`` returns the tuned body's embeddings."""

    family = "setfit"
    uses_validation = True

    def __init__(self, **params: Any):
        from ticket_triage.models.encoder import BACKENDS

        super().__init__(**merged_params(DEFAULTS, params, self.family))
        if self.params["backend"] not in BACKENDS:
            raise ValueError(f"setfit: backend must be one of {', '.join(BACKENDS)}, got {self.params['backend']!r}")
        enc = self.params["encoder"]
        if enc and enc != "default" and Path(str(enc)).expanduser().is_dir():
            self.params["encoder"] = str(Path(enc).expanduser().resolve())
        self.body = None          # the SentenceTransformer (training, backend torch)
        self.runner = None        # what encodes at prediction time (body or an OnnxSentenceEncoder)
        self.head = None
        self.body_dir: Path | None = None
        self.train_info: dict[str, Any] = {}

    def _load_body(self, path_or_name: str, *, fallback: bool = False) -> Any:
        import os

        from ticket_triage.models.encoder import configure_torch_threads, resolve_device, resolve_encoder

        if path_or_name == "default":
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        configure_torch_threads()
        from sentence_transformers import SentenceTransformer

        # a fresh copy: training changes the weights, so never the shared cached encoder
        return SentenceTransformer(resolve_encoder(path_or_name),
                                   device=resolve_device(str(self.params["device"]), fallback=fallback))

    # -- training ----------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[str], *, progress: bool = True,
            validation: tuple[Sequence[str], Sequence[str]] | None = None) -> "SetFitClassifier":
        check_training_data(texts, labels)
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
        from transformers import TrainerCallback, set_seed

        from ticket_triage.models.finetune import (Budget, EarlyStopping, macro_f1, max_length_from_data,
                                                   split_validation)

        p = self.params
        seed = int(p["seed"])
        budget = Budget(p["max_train_minutes"])
        set_seed(seed)
        tx, ty, vx, vy = split_validation(texts, labels, validation, float(p["val_fraction"]), seed)
        internal_val = validation is None and bool(vx)
        body = self._load_body(p["encoder"])
        cap = int(p["max_length_cap"])
        max_len = (max_length_from_data(body.tokenizer, tx, cap, seed=seed) if p["max_length"] == "auto"
                   else int(p["max_length"]))
        body.max_seq_length = max_len
        n = len(tx)
        iters = (int(p["num_iterations"]) if p["num_iterations"] != "auto"
                 else max(1, min(int(p["max_iterations"]), math.ceil(int(p["pair_budget"]) / (2 * n)))))
        bs = int(p["batch_size"])
        steps_per_epoch = math.ceil(2 * n * iters / bs)
        total = int(p["max_steps"]) if int(p["max_steps"]) > 0 else steps_per_epoch * int(p["num_epochs"])
        eval_steps = (max(20, total // 8) if p["eval_steps"] == "auto" else max(1, int(p["eval_steps"])))
        stopper = EarlyStopping(int(p["patience"]))
        show = progress_enabled(progress)
        info: dict[str, Any] = {"max_length": max_len, "num_iterations": iters, "planned_steps": total,
                                "eval_steps": eval_steps, "train_examples": n, "val_examples": len(vx),
                                "stopped": "completed"}
        clf = self
        # on a terminal setfit draws its own tqdm bar; in a log, periodic progress lines stand in for it
        logbar = progress_bar(total=total, desc="setfit contrastive", unit="step", progress=progress and not show)

        def evaluate(step: int) -> None:
            if not vx:
                return
            model = body  # the callbacks get the SetFitModel; the body is what trains
            was = model.training
            model.eval()
            head = clf._new_head().fit(clf._encode_with(model, tx), ty)
            score = macro_f1(vy, head.predict(clf._encode_with(model, vx)))
            model.train(was)
            stopper.update(score, step, model, budget.elapsed_s)
            if progress:
                log.info("setfit: step %d/%d, validation macro-F1 %.4f (best %.4f at step %d), %.0f s",
                         step, total, score, stopper.best, stopper.best_step, budget.elapsed_s)

        class Guard(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kw):  # noqa: D401 - HF API
                step = int(state.global_step)
                logbar.update(step - logbar.n)
                if budget.expired():
                    info["stopped"] = "budget"
                    evaluate(step)
                    control.should_training_stop = True
                elif vx and step % eval_steps == 0:
                    evaluate(step)
                    if stopper.should_stop:
                        info["stopped"] = "early_stopping"
                        control.should_training_stop = True
                info["steps"] = step
                return control

            def on_train_end(self, args, state, control, model=None, **kw):  # noqa: D401 - HF API
                if vx and (not stopper.history or stopper.history[-1][0] != int(state.global_step)):
                    evaluate(int(state.global_step))
                return control

        model = SetFitModel(model_body=body, model_head=self._new_head(), normalize_embeddings=bool(p["normalize"]))
        with tempfile.TemporaryDirectory(prefix="setfit-") as out:
            args = TrainingArguments(
                output_dir=out, batch_size=bs, num_epochs=int(p["num_epochs"]), num_iterations=iters,
                sampling_strategy=str(p["sampling_strategy"]), max_steps=total,
                body_learning_rate=float(p["body_learning_rate"]), warmup_proportion=float(p["warmup_ratio"]),
                seed=seed, report_to="none", save_strategy="no", logging_strategy="no", show_progress_bar=show)
            data = Dataset.from_dict({"text": tx, "label": ty})
            trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[Guard()])
            st = trainer.st_trainer
            st.args.disable_tqdm = not show
            st.args.batch_sampler = _length_sampler(seed)
            if not show:  # the bar callback is chosen at Trainer init: take it out explicitly
                from transformers.trainer_callback import ProgressCallback

                st.remove_callback(ProgressCallback)
            if str(p["device"]) == "cpu":
                st.args.dataloader_pin_memory = False
            trainer.train_embeddings(tx, ty, args=args)
        logbar.close()
        stopper.restore(body)
        body.eval()
        if info["stopped"] == "completed" and int(p["max_steps"]) > 0:
            info["stopped"] = "max_steps"  # as the transformer family says it
        info.update({"seconds": round(budget.elapsed_s, 1), "best_step": stopper.best_step,
                     "best_val_macro_f1": None if stopper.best_state is None else round(stopper.best, 4),
                     "history": stopper.history})
        self.body, self.train_info = body, info
        self._prepare_runner()
        # the head sees what serving sees: the chosen backend's embeddings; a slice held out only
        # for early stopping joins the head's training data
        hx, hy = (tx + vx, ty + vy) if internal_val else (tx, ty)
        self.head = self._new_head().fit(self._features(hx), hy)
        self.labels = [str(c) for c in self.head.classes_]
        return self

    def _new_head(self) -> Any:
        from sklearn.linear_model import LogisticRegression

        p = self.params
        return LogisticRegression(C=float(p["head_C"]), max_iter=int(p["head_max_iter"]),
                                  class_weight=p["class_weight"], random_state=int(p["seed"]))

    def _encode_with(self, model: Any, texts: Sequence[str], cache: bool = False) -> np.ndarray:
        from ticket_triage.models.encoder import encode

        return encode(texts, model, batch_size=64, normalize=bool(self.params["normalize"]), progress=False,
                      cache=cache)

    def _prepare_runner(self) -> None:
        """After training: with an ONNX backend, write the body to a work folder and export it."""
        backend = self.params["backend"]
        if backend == "torch":
            self.runner = self.body
            return
        from ticket_triage.models.finetune import onnx_encoder_for

        work = Path(tempfile.mkdtemp(prefix="setfit-body-"))
        weakref.finalize(self, shutil.rmtree, str(work), True)
        self.body_dir = work / BODY_DIR
        self.body.save_pretrained(str(self.body_dir), create_model_card=False, safe_serialization=True)
        self.runner = onnx_encoder_for(self.body_dir, backend)

    # -- prediction --------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.runner is None or self.head is None:
            raise RuntimeError("setfit: the model is not trained; call fit() or load_classifier() first")

    def _features(self, texts: Sequence[str]) -> np.ndarray:
        if self.runner is None:
            raise RuntimeError("setfit: the model is not trained; call fit() or load_classifier() first")
        # a trained body is frozen from here on: its embeddings may be cached
        return self._encode_with(self.runner, texts, cache=True)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._require_fitted()
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)))
        return self.head.predict_proba(self._features(texts))

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """L2-normalized embeddings from the fine-tuned body (the backend that serves it)."""
        from ticket_triage.models.encoder import encode

        self._require_fitted()
        return encode(texts, self.runner, batch_size=64, normalize=True, progress=progress, cache=True)

    # -- persistence -------------------------------------------------------------------------
    def _save_weights(self, path: Path) -> None:
        self._require_fitted()
        target = path / BODY_DIR
        if self.body_dir is not None and self.body_dir.resolve() != target.resolve():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(self.body_dir, target)   # the weights and the exported ONNX file
        elif self.body_dir is None:
            self.body.save_pretrained(str(target), create_model_card=False, safe_serialization=True)
        save_sklearn(self.head, path / HEAD_FILE)
        (path / INFO_FILE).write_text(json.dumps(self.train_info, indent=2))

    @classmethod
    def _load_weights(cls, path: Path, params: dict[str, Any]) -> "SetFitClassifier":
        clf = cls(**params)
        body_dir = path / BODY_DIR
        if not (body_dir / "modules.json").is_file():
            raise FileNotFoundError(f"{body_dir} is missing or incomplete: the saved SetFit model has no body; save it again")
        clf.head = load_sklearn(path / HEAD_FILE, path / LEGACY_HEAD_FILE, TRUSTED_TYPES)
        if clf.params["backend"] == "torch":
            clf.body = clf._load_body(str(body_dir), fallback=True)
            clf.body.eval()
            clf.runner = clf.body
        else:
            from ticket_triage.models.finetune import onnx_encoder_for

            clf.body_dir = body_dir
            clf.runner = onnx_encoder_for(body_dir, clf.params["backend"])
        if (path / INFO_FILE).is_file():
            clf.train_info = json.loads((path / INFO_FILE).read_text())
        clf.labels = [str(c) for c in clf.head.classes_]
        return clf
