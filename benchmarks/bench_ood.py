"""Out-of-scope ceiling on CLINC150: how well can any score on the default encoder's
embeddings separate ``oos`` queries from in-scope ones?

The decision-policy targets on CLINC150 (>= 90% of in-scope auto-routed while >= 95% of oos go
to review) need a score that flags 95% of oos queries while flagging at most ~10% of in-scope
ones; whatever the thresholds do afterwards, ``1 - (in-scope share flagged at 95% oos recall)``
bounds the in-scope share that can be auto-routed. This benchmark measures that bound for:

* ``knn10`` / ``knn1``: 1 - mean cosine similarity to the k nearest training embeddings (the
  library's ``ticket_triage.decision.ood.OODScorer``, k=10 is the default);
* ``mahalanobis``: min class-conditional Mahalanobis distance, shared covariance with
  shrinkage 0.1 (Lee et al. 2018; Podolskiy et al. 2021);
* ``oos_class``: probability of an extra ``oos`` class in a logistic regression trained on
  the embeddings with CLINC's 100 ``oos_train`` queries (outside the benchmark protocol,
  which trains on in-scope only; shown to say whether a supervised oos class would help).

Per score and split (val + oos_val, test + oos_test): AUROC and the in-scope share flagged
when the cut-off flags 95% of oos. Embeddings: MiniLM through the encoder backend given
(default onnx-int8, as in the default ensemble). Writes benchmarks/results/ood.json.

    .venv/bin/python benchmarks/bench_ood.py [--backend onnx-int8|onnx|torch]

``--finetune transformer|setfit`` measures the same scores on the embeddings of an encoder
fine-tuned on the 150 in-scope intents (trained on ``train``, early-stopped on ``val``, served by
``--backend``; ``--device cuda`` trains on a GPU, ``--max-train-minutes`` bounds it)::

    .venv/bin/python benchmarks/bench_ood.py --finetune transformer --out benchmarks/results/ood_finetuned.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRIAGE_DATASETS", str(ROOT.parent / "shared" / "datasets")))


def flagged_at_recall(in_s: np.ndarray, oos_s: np.ndarray, recall: float = 0.95) -> float:
    """In-scope share flagged (score > cut) by the cut that flags ``recall`` of oos scores."""
    cut = float(np.quantile(oos_s, 1.0 - recall))
    return float(np.mean(in_s > cut))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="onnx-int8", help="encoder backend (torch | onnx | onnx-int8)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ood.json"))
    ap.add_argument("--finetune", default=None, choices=["transformer", "setfit"],
                    help="embed with an encoder fine-tuned on the in-scope intents instead of the frozen one")
    ap.add_argument("--device", default="cpu", help="training device of --finetune (cpu | cuda | auto)")
    ap.add_argument("--max-train-minutes", type=float, default=15.0)
    ap.add_argument("--encoder", default="default", help="encoder directory (default: the packaged MiniLM)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="hyperparameter of the --finetune family (repeatable)")
    args = ap.parse_args(argv)
    import logging

    # the library's progress lines and training curves are INFO log records when stderr is not a terminal
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from ticket_triage.models.encoder import encode, load_encoder
    from ticket_triage.decision.ood import OODScorer
    from ticket_triage.text.clean import clean_text

    data = json.loads((SHARED / "clinc150" / "data_full.json").read_text())
    texts = {sp: [clean_text("", t) for t, _ in data[sp]]
             for sp in ("train", "val", "test", "oos_train", "oos_val", "oos_test")}
    train_info: dict = {}
    if args.finetune:
        from ticket_triage.models import build_classifier

        hp = {"seed": args.seed, "device": args.device, "backend": args.backend,
              "max_train_minutes": args.max_train_minutes,
              "encoder" if args.finetune == "setfit" else "pretrained": args.encoder,
              **{k: json.loads(v) if v[:1] in "0123456789-[{tfn" else v
                 for k, v in (x.split("=", 1) for x in args.set)}}
        t0 = time.perf_counter()
        clf = build_classifier(args.finetune, **hp).fit(
            texts["train"], [y for _, y in data["train"]], progress=True,
            validation=(texts["val"], [y for _, y in data["val"]]))
        train_info = {k: v for k, v in clf.train_info.items()}
        train_info["seconds_total"] = round(time.perf_counter() - t0, 1)
        test_pred = clf.predict(texts["test"])
        train_info["test_accuracy"] = round(float(np.mean(np.array(test_pred) == np.array([y for _, y in data["test"]]))), 4)
        embed = clf.embed
    else:
        enc = load_encoder(args.encoder, "cpu", args.backend)

        def embed(x):
            return encode(x, enc, progress=True)
    t0 = time.perf_counter()
    emb = {sp: embed(texts[sp]) for sp in texts}
    encode_s = time.perf_counter() - t0
    y_tr = np.array([y for _, y in data["train"]])

    # the library's Mahalanobis score (shared covariance, shrinkage 0.1, one projection per batch)
    mahalanobis = OODScorer(max_train=len(y_tr), method="mahalanobis").fit(emb["train"], y_tr).score

    clf = LogisticRegression(C=20.0, max_iter=3000).fit(
        np.r_[emb["train"], emb["oos_train"]], np.r_[y_tr, ["oos"] * len(emb["oos_train"])])
    oos_col = list(clf.classes_).index("oos")
    scorers = {
        "knn10": OODScorer(k=10, max_train=len(y_tr)).fit(emb["train"]).score,
        "knn1": OODScorer(k=1, max_train=len(y_tr)).fit(emb["train"]).score,
        "mahalanobis": mahalanobis,
        "oos_class": lambda q: clf.predict_proba(q)[:, oos_col],
    }
    rows = {}
    for name, fn in scorers.items():
        rows[name] = {}
        for sp in ("val", "test"):
            a, b = fn(emb[sp]), fn(emb["oos_" + sp])
            auroc = float(roc_auc_score(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b]))
            fl = flagged_at_recall(a, b)
            rows[name][sp] = {"auroc": round(auroc, 4), "in_scope_flagged_at_95_oos": round(fl, 4),
                              "in_scope_auto_ceiling": round(1 - fl, 4)}
            print(f"{name:12s} {sp:4s} AUROC {auroc:.4f}  in-scope flagged at 95% oos recall {fl:.3f}"
                  f"  -> at most {1 - fl:.1%} of in-scope can auto-route", flush=True)
    out = {"encoder": f"all-MiniLM-L6-v2 ({args.backend})" + (f", fine-tuned: {args.finetune}" if args.finetune else ""),
           "train_info": train_info, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "encode_seconds": round(encode_s, 1), "scores": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
