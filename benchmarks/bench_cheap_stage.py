"""Which first stage for the cascade: TF-IDF + logistic regression, or static embeddings distilled
locally from the packaged MiniLM with ``model2vec`` (or both)?

A first stage is worth what it can decide alone at the auto-route precision target, so for
each candidate this reports, on BANKING77 (intents learned, probabilities summed to the 10
topics of ``conf/taxonomy/banking77.yaml``, as the cascade does at ``label_level: tag``):

* intent and topic accuracy on test.csv (3,080 tickets the models never saw);
* the share of test tickets at or above the lowest confidence whose precision on a 10%
  validation cut of train.csv reaches ``--precision`` (default 0.993, what the cascade's
  exits certify), and the precision of that share on test;
* texts/s of the features alone (TF-IDF transform / static encode) on the test texts.

Candidates: ``tfidf_logreg`` (the library's family, default parameters, what the cascade uses
today); ``model2vec`` (the packaged all-MiniLM-L6-v2 distilled by ``model2vec.distill`` into
256-dimensional static token embeddings, no download, ~20 s on 2 cores) + logistic regression
at several C; the two feature sets side by side in one logistic regression (``concat``,
static part weighted by ``w``); and the geometric mean of the two models. Texts are cleaned
with the project's default cleaning. Needs the ``bench`` extra (``pip install -e ".[bench]"``:
model2vec 0.7.0).

    flock /tmp/tt-bench.lock .venv/bin/python benchmarks/bench_cheap_stage.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRIAGE_DATASETS", str(ROOT.parent / "shared" / "datasets")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", type=float, default=0.993)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cheap_stage.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from model2vec import StaticModel
        from model2vec.distill import distill
    except ImportError:
        ap.error('model2vec is not installed: pip install -e ".[bench]"')
    import numpy as np
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    from ticket_triage.config import compose
    from ticket_triage.models import build_classifier
    from ticket_triage.models.encoder import DEFAULT_ENCODER, resolve_encoder
    from ticket_triage.taxonomy import load_taxonomy
    from ticket_triage.text.clean import CleanConfig

    clean = CleanConfig.from_dict(compose([], root=ROOT).get("clean"))
    tag_to_topic = load_taxonomy(ROOT / "conf" / "taxonomy" / "banking77.yaml").tag_to_topic
    topics = sorted(set(tag_to_topic.values()))

    def rows(split: str) -> tuple[list[str], list[str]]:
        rs = list(csv.DictReader((SHARED / "banking77" / f"{split}.csv").open(encoding="utf-8")))
        return [clean.apply("", r["text"]) for r in rs], [r["category"] for r in rs]

    x_train, y_train = rows("train")
    x_test, y_test = rows("test")
    perm = np.random.default_rng(args.seed).permutation(len(x_train))
    n_val = len(x_train) // 10
    x_fit, y_fit = [x_train[i] for i in perm[n_val:]], [y_train[i] for i in perm[n_val:]]
    x_val, y_val = [x_train[i] for i in perm[:n_val]], [y_train[i] for i in perm[:n_val]]

    def to_topics(p: np.ndarray, classes: list[str]) -> np.ndarray:
        q = np.zeros((p.shape[0], len(topics)))
        for j, c in enumerate(classes):
            q[:, topics.index(tag_to_topic[c])] += p[:, j]
        return q

    results: dict[str, dict] = {}

    def report(name: str, p_val: np.ndarray, p_test: np.ndarray, classes: list[str], **extra) -> None:
        yv = np.array([topics.index(tag_to_topic[y]) for y in y_val])
        yt = np.array([topics.index(tag_to_topic[y]) for y in y_test])
        qv, qt = to_topics(p_val, classes), to_topics(p_test, classes)
        conf_v, ok_v = qv.max(1), qv.argmax(1) == yv
        order = np.argsort(-conf_v)
        prec = np.cumsum(ok_v[order]) / np.arange(1, len(order) + 1)
        reach = np.flatnonzero((prec >= args.precision) & (np.arange(1, len(order) + 1) >= 50))
        cut = float(conf_v[order][reach.max()]) if len(reach) else 1.0
        sel = qt.max(1) >= cut
        results[name] = {
            "intent_accuracy": round(float(np.mean(np.array(classes)[p_test.argmax(1)] == np.array(y_test))), 4),
            "topic_accuracy": round(float(np.mean(qt.argmax(1) == yt)), 4),
            "validation_cut": round(cut, 4), "test_share_at_cut": round(float(sel.mean()), 4),
            "test_precision_at_cut": round(float(np.mean(qt.argmax(1)[sel] == yt[sel])), 4) if sel.any() else None,
            **extra}
        r = results[name]
        print(f"{name:<26} intents {r['intent_accuracy']:.4f}  topics {r['topic_accuracy']:.4f}  "
              f"share {r['test_share_at_cut']:.3f} at {r['test_precision_at_cut']}  (cut {cut:.3f})", flush=True)

    tfidf = build_classifier("tfidf_logreg").fit(x_fit, y_fit, progress=False)
    classes = [str(c) for c in tfidf.labels]
    feats = tfidf.pipeline.named_steps["features"]
    s = time.perf_counter()
    f_test = feats.transform(x_test)
    tfidf_tps = len(x_test) / (time.perf_counter() - s)
    report("tfidf_logreg", tfidf.predict_proba(x_val), tfidf.predict_proba(x_test), classes,
           features_texts_per_s=round(tfidf_tps))

    with tempfile.TemporaryDirectory(prefix="m2v-") as tmp:
        s = time.perf_counter()
        distill(model_name=resolve_encoder(DEFAULT_ENCODER), pca_dims=256).save_pretrained(tmp)
        distill_s = time.perf_counter() - s
        static = StaticModel.from_pretrained(tmp)
    e_fit, e_val = static.encode(x_fit), static.encode(x_val)
    s = time.perf_counter()
    e_test = static.encode(x_test)
    static_tps = len(x_test) / (time.perf_counter() - s)
    for c in (3, 10, 30):
        lr = LogisticRegression(C=c, max_iter=3000).fit(e_fit, y_fit)
        if [str(k) for k in lr.classes_] != classes:
            raise RuntimeError("label order differs between the models")
        report(f"model2vec_logreg C={c}", lr.predict_proba(e_val), lr.predict_proba(e_test), classes,
               features_texts_per_s=round(static_tps), distill_seconds=round(distill_s, 1))
        if c == 10:
            static_lr = lr

    def unit(e: np.ndarray) -> np.ndarray:
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-9)

    head_c = float(getattr(tfidf.pipeline.named_steps["clf"], "C", 10.0))
    for w in (0.5, 1.0, 2.0):
        def both(f, e):
            return sparse.hstack([f, sparse.csr_matrix(unit(e) * w)]).tocsr()
        lr = LogisticRegression(C=head_c, max_iter=3000).fit(both(feats.transform(x_fit), e_fit), y_fit)
        report(f"concat w={w}", lr.predict_proba(both(feats.transform(x_val), e_val)),
               lr.predict_proba(both(f_test, e_test)), classes)

    def geo(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        g = np.sqrt(a * b)
        return g / g.sum(1, keepdims=True)

    report("geometric mean (C=10)", geo(tfidf.predict_proba(x_val), static_lr.predict_proba(e_val)),
           geo(tfidf.predict_proba(x_test), static_lr.predict_proba(e_test)), classes)
    out = {"protocol": __doc__.split("\n\n")[0].replace("\n", " "), "precision_target": args.precision,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible", "seed": args.seed,
           "n_fit": len(x_fit), "n_val": len(x_val), "n_test": len(x_test), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
