"""Decision-policy benchmark: how much is auto-routed, how precisely, and what goes to review.

    .venv/bin/python benchmarks/bench_policy.py [--family embed_logreg] [--label-level tag]
                                                [--datasets banking77,clinc150] [--thresholds default]
    # a fine-tuned encoder family on a GPU, served int8 on the CPU:
    .venv/bin/python benchmarks/bench_policy.py --family transformer --set model.device=cuda

BANKING77 (topics): train.csv as published, 10% of it held out (stratified) as validation
for calibration and threshold tuning, measured on test.csv (3,080 tickets) at the 10-topic
level: share auto-routed, precision of the auto-routed, draft and review shares, ECE.

CLINC150: trained on the in-scope train split (150 intents), thresholds and the out-of-scope
cut-off tuned on val + oos_val, measured on test + oos_test: share of in-scope auto-routed,
precision of everything auto-routed (an oos ticket auto-routed counts as wrong), share of oos
sent to review.

Everything goes through the library's build_bundle / Triage.decide (the production path).
Writes benchmarks/results/policy.json.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import platform
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__import__("os").environ.get("TRIAGE_DATASETS", str(ROOT.parent / "shared" / "datasets")))


def _stratified_holdout(rows, frac, seed):
    by = defaultdict(list)
    for r in rows:
        by[r["label_fine"]].append(r)
    rng = random.Random(seed)
    tr, va = [], []
    for lab in sorted(by):
        items = by[lab][:]
        rng.shuffle(items)
        k = max(1, round(len(items) * frac))
        va += items[:k]
        tr += items[k:]
    return tr, va


def _score(triage, rows):
    from ticket_triage.metrics import auto_route_metrics, expected_calibration_error

    ds = triage.decide([{"id": r["id"], "text": r["text"], "subject": "", "body": ""} for r in rows])
    y = [r["topic"] for r in rows]
    m = auto_route_metrics([d.band for d in ds], y, [d.topic for d in ds])
    probs = triage.topic_proba([r["text"] for r in rows])
    ins = [i for i, t in enumerate(y) if t in triage.topics]
    if ins:
        idx = [triage.topics.index(y[i]) for i in ins]
        m["ece"] = expected_calibration_error(probs[ins].max(axis=1), probs[ins].argmax(axis=1) == idx)
    m["accuracy_in_scope"] = sum(ds[i].topic == y[i] for i in ins) / max(1, len(ins))
    bands_in = [ds[i].band for i in ins]
    m["in_scope_auto_share"] = bands_in.count("auto_route") / max(1, len(ins))
    m["reasons"] = {}
    for d in ds:
        m["reasons"][d.reason.split(":")[0]] = m["reasons"].get(d.reason.split(":")[0], 0) + 1
    if triage.cascade is not None:  # per stage: share decided, auto-routed, precision of the auto-routed
        m["stages"] = {}
        for stage in ("cheap", "full"):
            idx = [i for i, d in enumerate(ds) if d.explanation.get("stage") == stage]
            auto = [i for i in idx if ds[i].band == "auto_route"]
            m["stages"][stage] = {"share": len(idx) / max(1, len(ds)), "auto_share": len(auto) / max(1, len(ds)),
                                  "auto_precision": (sum(ds[i].topic == y[i] for i in auto) / len(auto)) if auto else None}
    return m


def _score_both(bundle, rows):
    """The bundle's figures as served (with its cascade when it has one) and, for a cascade
    bundle, with the cascade off (= a bundle built without it: policy.json's thresholds)."""
    from ticket_triage.decision.triage import Triage

    tri = Triage.load(bundle)
    m = _score(tri, rows)
    if tri.cascade is not None:
        m["cascade_info"] = tri.cascade.info
        m["without_cascade"] = _score(Triage.load(bundle, cascade=False), rows)
    return m, tri


def _train_bundle(params, family, level, train_rows, val_rows, out, oos_texts=None):
    from ticket_triage.decision.bundle import build_bundle
    from ticket_triage.models import build_classifier

    hp = {k: v for k, v in params["model"].items() if k != "family"}
    clf = build_classifier(params["model"].get("family") or family, **hp)  # --family transformer_tfidf: an ensemble
    labels = [r["label_fine"] if level == "tag" else r["topic"] for r in train_rows]
    t0 = time.perf_counter()
    kw = {}
    if getattr(clf, "uses_validation", False):  # fine-tuned families stop early on the validation split
        kw["validation"] = ([r["text"] for r in val_rows], [r["label_fine"] if level == "tag" else r["topic"]
                                                             for r in val_rows])
    clf.fit([r["text"] for r in train_rows], labels, progress=True, **kw)
    fit_s = time.perf_counter() - t0
    return build_bundle(clf, train_rows, val_rows, params, out, label_level=level,
                        model_version=f"bench-{family}-{level}", oos_texts=oos_texts), fit_s


def banking77_splits(params, seed):
    """(train, validation, test) rows of BANKING77 as this benchmark uses them: train.csv cleaned
    with the library's cleaning, 10% of it held out (stratified by intent, ``seed``) as
    validation; test.csv as published."""
    from ticket_triage.data import clean_tickets
    from ticket_triage.ingest.readers import read_tickets
    from ticket_triage.taxonomy import parse_taxonomy

    tax = parse_taxonomy(params["taxonomy"])
    mapping = {"body": "text", "tags": "category"}
    tr_t, _, _ = read_tickets(SHARED / "banking77" / "train.csv", "csv", mapping)
    te_t, _, _ = read_tickets(SHARED / "banking77" / "test.csv", "csv", mapping)
    train_all, *_ = clean_tickets(tr_t, tax, {"dedupe": False})
    test, *_ = clean_tickets(te_t, tax, {"dedupe": False})
    train, val = _stratified_holdout(train_all, 0.1, seed)
    return train, val, test


def bench_banking77(params, family, level, seed, bundle_out=None, validation_only_too=False):
    from ticket_triage.decision.triage import Triage

    train, val, test = banking77_splits(params, seed)
    with tempfile.TemporaryDirectory() as d:
        bundle, fit_s = _train_bundle(params, family, level, train, val, Path(d) / "b")
        m, tri = _score_both(bundle, test)
        if bundle_out:  # kept for bench_decide.py (e.g. the cascade's throughput on the same bundle)
            import shutil

            shutil.rmtree(bundle_out, ignore_errors=True)
            shutil.copytree(bundle, bundle_out)
        m["train_seconds"] = fit_s
        m["train_info"] = {k: v for k, v in getattr(tri.classifier, "train_info", {}).items() if k != "history"}
        m["thresholds"] = tri.thresholds.to_dict()["auto_route"]
        m["threshold_info"] = {k: v for k, v in tri.policy.thresholds.get("info", {}).items()
                               if k.startswith(("cross_fit", "n_"))}
        if validation_only_too:  # the same fitted model, thresholds tuned on validation alone
            from ticket_triage.decision.bundle import build_bundle

            p2 = copy.deepcopy(params)
            p2["thresholds"]["cross_fit_folds"] = 0
            b2 = build_bundle(tri.classifier, train, val, p2, Path(d) / "v", label_level=level,
                              model_version=f"bench-{family}-{level}-validation-only")
            m["validation_only"] = _score(Triage.load(b2, cascade=False), test)
    return m


def bench_clinc150(params, family, seed):
    from ticket_triage.decision.triage import Triage

    data = json.loads((SHARED / "clinc150" / "data_full.json").read_text())
    intents = sorted({lab for _, lab in data["train"]})
    # a generated taxonomy: one topic per intent (the policy needs one; CLINC has no coarser level)
    params = copy.deepcopy(params)
    params["taxonomy"] = {
        "name": "clinc150", "version": 1,
        "topics": [{"id": i, "description": f"intent {i}", "examples": ["a", "b", "c"], "maps_from": []}
                   for i in intents],
        "urgency": [{"id": p, "description": p} for p in ("P0", "P1", "P2", "P3")],
    }
    params["rules"] = {"rules": []}

    def rows(split):
        return [{"id": f"{split}-{i}", "text": t, "topic": lab, "label_fine": lab, "language": "en"}
                for i, (t, lab) in enumerate(data[split])]

    train, val, test = rows("train"), rows("val"), rows("test")
    oos_val = [t for t, _ in data["oos_val"]]
    oos_test = [{"id": f"oos-{i}", "text": t, "topic": "oos", "language": "en"} for i, (t, _) in enumerate(data["oos_test"])]
    with tempfile.TemporaryDirectory() as d:
        bundle, fit_s = _train_bundle(params, family, "topic", train, val, Path(d) / "b", oos_texts=oos_val)
        m, tri = _score_both(bundle, test + oos_test)
        m["train_seconds"] = fit_s
        m["ood_cutoff"] = tri.ood.cutoff if tri.ood is not None else None
        m["ood_method"] = tri.policy.ood.get("method") if tri.policy.ood else None
        m["ood_method_auroc"] = tri.policy.ood.get("method_auroc") if tri.policy.ood else None
        m["train_info"] = {k: v for k, v in getattr(tri.classifier, "train_info", {}).items() if k != "history"}
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="embed_logreg")
    ap.add_argument("--label-level", default="tag", choices=["topic", "tag"])
    ap.add_argument("--datasets", default="banking77,clinc150")
    ap.add_argument("--thresholds", default="default", help="conf/thresholds/<name>.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Hydra override, e.g. --set thresholds.cross_fit_folds=0 (repeatable)")
    ap.add_argument("--params", default=None,
                    help="a composed params JSON/YAML to use instead of composing conf/ (machines without "
                         "Hydra); --set then sets dotted keys in it")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bundle-out", default=None, metavar="DIR",
                    help="keep the BANKING77 bundle in DIR (e.g. for benchmarks/bench_decide.py --bundle DIR)")
    ap.add_argument("--validation-only-too", action="store_true",
                    help="BANKING77: also tune the same fitted model's thresholds on validation alone "
                         "(cross_fit_folds=0) and score that bundle too (key validation_only)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "policy.json"))
    args = ap.parse_args()
    import logging

    # the library's progress lines and training curves are INFO log records when stderr is not a terminal
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    sys.path.insert(0, str(ROOT / "src"))
    from ticket_triage.config import compose  # noqa: F401 - imports Hydra lazily

    if args.params:
        import yaml

        params = yaml.safe_load(Path(args.params).read_text())
        for kv in args.set:
            key, val = kv.split("=", 1)
            *parents, leaf = key.split(".")
            node = params
            for k in parents:
                node = node.setdefault(k, {})
            node[leaf] = yaml.safe_load(val)
    else:
        params = compose([f"model={args.family}", f"thresholds={args.thresholds}", *args.set], root=ROOT)
    result = {"family": args.family, "label_level": args.label_level, "thresholds": args.thresholds,
              "overrides": args.set,
              "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores"}
    if "banking77" in args.datasets:
        result["banking77_topics"] = bench_banking77(params, args.family, args.label_level, args.seed,
                                                     args.bundle_out, args.validation_only_too)
        print("banking77", json.dumps(result["banking77_topics"], default=str)[:600], flush=True)
    if "clinc150" in args.datasets:
        result["clinc150"] = bench_clinc150(params, args.family, args.seed)
        print("clinc150", json.dumps(result["clinc150"], default=str)[:600], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
