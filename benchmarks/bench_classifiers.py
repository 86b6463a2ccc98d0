"""Benchmark the classifier families on BANKING77 (train.csv -> test.csv as published).

Per family: intent-level (77) and topic-level (10, via the taxonomy's maps_from) accuracy and
macro-F1, where topic probabilities are sums of intent probabilities; optionally a model
trained directly on topics; training time; single-ticket latency (median over N calls);
batch latency per ticket; peak RSS. Each family runs in its own process so that peak RSS is
that family's. Results are merged into --out (one entry per family and settings).

    python benchmarks/bench_classifiers.py --families tfidf_logreg embed_logreg
    python benchmarks/bench_classifiers.py --families setfit --train-subsample 770 --max-train-steps 50
    python benchmarks/bench_classifiers.py --families transformer setfit --device cuda   # a GPU box

Not a test: it takes minutes to hours depending on the family and the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("TRIAGE_DATASETS", "/work/shared/datasets")) / "banking77"
STEP_PARAM = {"setfit": "max_steps", "transformer": "max_steps"}


def read_split(path: Path) -> tuple[list[str], list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "text" not in rows[0] or "category" not in rows[0]:
        raise SystemExit(f"{path}: expected a CSV with columns text,category (BANKING77 as published)")
    return [r["text"] for r in rows], [r["category"] for r in rows]


def subsample(texts: list[str], labels: list[str], n: int | None, seed: int) -> tuple[list[str], list[str]]:
    """A stratified sample of about n rows (at least 2 per label); train.csv is sorted by
    intent, so never take the first rows."""
    if not n or n >= len(texts):
        return texts, labels
    from sklearn.model_selection import train_test_split

    k = len(set(labels))
    if n < 2 * k:
        raise SystemExit(f"--train-subsample {n} is too small for {k} labels: use at least {2 * k}")
    x, _, y, _ = train_test_split(texts, labels, train_size=n, stratify=labels, random_state=seed)
    return list(x), list(y)


def family_params(family: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    import yaml

    cfg = yaml.safe_load((ROOT / "conf" / "model" / f"{family}.yaml").read_text()) or {}
    cfg.pop("family", None)
    cfg["seed"] = seed
    if family in ("embed_logreg", "setfit", "transformer"):
        cfg["device"] = args.device
    for m in cfg.get("members") or []:  # ensemble: its encoder-based members
        if m.get("family") in ("embed_logreg", "setfit", "transformer"):
            m["device"] = args.device
    if args.max_train_steps and family in STEP_PARAM:
        cfg[STEP_PARAM[family]] = args.max_train_steps
    for kv in args.param or []:  # KEY=VALUE, KEY may be dotted: members.0.backend=onnx
        k, _, v = kv.partition("=")
        *path, last = k.split(".")
        node: Any = cfg
        for part in path:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[int(last) if isinstance(node, list) else last] = yaml.safe_load(v)
    return cfg


def scores(y_true: list[str], y_pred: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
            "macro_f1": round(float(f1_score(y_true, y_pred, average="macro")), 4)}


def run_family(family: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs in a child process: train, evaluate, time; returns one result dict."""
    import numpy as np

    from ticket_triage.models import build_classifier
    from ticket_triage.taxonomy import load_taxonomy

    tax = load_taxonomy(args.taxonomy)
    to_topic = tax.tag_to_topic
    x_tr_all, y_tr_all = read_split(args.data / "train.csv")
    x_te, y_te = read_split(args.data / "test.csv")
    missing = sorted(set(y_tr_all) - set(to_topic))
    if missing:
        raise SystemExit(f"{args.taxonomy}: intents not mapped to any topic: {', '.join(missing)}")
    t_te = [to_topic[y] for y in y_te]

    runs = []
    for r in range(args.repeats):
        seed = args.seed + r
        x_tr, y_tr = subsample(x_tr_all, y_tr_all, args.train_subsample, seed)
        params = family_params(family, args, seed)
        clf = build_classifier(family, **params)
        t0, c0 = time.perf_counter(), time.process_time()
        clf.fit(x_tr, y_tr, progress=not args.no_progress)
        train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0

        t0 = time.perf_counter()
        probs = clf.predict_proba(x_te)
        batch_s = time.perf_counter() - t0
        labels = np.array(clf.labels)
        intent_pred = labels[probs.argmax(1)].tolist()
        topics = tax.topic_ids
        agg = np.zeros((len(topics), len(labels)))
        for j, lab in enumerate(labels):
            agg[topics.index(to_topic[lab]), j] = 1.0
        topic_probs = probs @ agg.T
        topic_pred = [topics[i] for i in topic_probs.argmax(1)]

        # single tickets the embedding cache has not seen (the batch above filled it)
        from ticket_triage.models.encoder import EMBEDDING_CACHE

        EMBEDDING_CACHE.clear()
        lat = []
        for i in range(args.latency_calls):
            t = x_te[i % len(x_te)]
            t0 = time.perf_counter()
            clf.predict_proba([t])
            lat.append(time.perf_counter() - t0)

        run = {
            "seed": seed, "n_train": len(x_tr), "params": params,
            "train_s": round(train_s, 2), "train_cpu_s": round(train_cpu_s, 2),
            "intent": scores(y_te, intent_pred),
            "topic_from_intents": scores(t_te, topic_pred),
            "latency_single_ms_median": round(1000 * statistics.median(lat), 3),
            "latency_batch_ms_per_ticket": round(1000 * batch_s / len(x_te), 3),
        }
        del clf
        if not args.no_topic_model:
            tclf = build_classifier(family, **params)
            t0 = time.perf_counter()
            tclf.fit(x_tr, [to_topic[y] for y in y_tr], progress=not args.no_progress)
            run["topic_direct_train_s"] = round(time.perf_counter() - t0, 2)
            tp = np.array(tclf.labels)[tclf.predict_proba(x_te).argmax(1)].tolist()
            run["topic_direct"] = scores(t_te, tp)
            del tclf
        runs.append(run)
        print(f"[{family}] seed {seed}: {json.dumps({k: v for k, v in run.items() if k != 'params'})}",
              file=sys.stderr, flush=True)

    def mean(get) -> float:
        return round(statistics.fmean(get(r) for r in runs), 4)

    summary = {
        "intent_accuracy": mean(lambda r: r["intent"]["accuracy"]),
        "intent_macro_f1": mean(lambda r: r["intent"]["macro_f1"]),
        "topic_from_intents_accuracy": mean(lambda r: r["topic_from_intents"]["accuracy"]),
        "topic_from_intents_macro_f1": mean(lambda r: r["topic_from_intents"]["macro_f1"]),
        "train_s": mean(lambda r: r["train_s"]),
        "train_cpu_s": mean(lambda r: r["train_cpu_s"]),
        "latency_single_ms_median": mean(lambda r: r["latency_single_ms_median"]),
        "latency_batch_ms_per_ticket": mean(lambda r: r["latency_batch_ms_per_ticket"]),
    }
    if not args.no_topic_model:
        summary["topic_direct_accuracy"] = mean(lambda r: r["topic_direct"]["accuracy"])
        summary["topic_direct_macro_f1"] = mean(lambda r: r["topic_direct"]["macro_f1"])
    try:
        import torch

        threads = torch.get_num_threads()
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover
        threads, cuda = None, None
    return {
        "family": family, "summary": summary, "runs": runs,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": threads, "cuda_device": cuda,
    }


def settings_key(family: str, args: argparse.Namespace) -> str:
    parts = [family]
    if args.train_subsample:
        parts.append(f"sub{args.train_subsample}")
    if args.max_train_steps and family in STEP_PARAM:
        parts.append(f"steps{args.max_train_steps}")
    if args.device != "cpu" and family != "tfidf_logreg":
        parts.append(args.device)
    parts += [p.replace("=", "") for p in args.param or []]
    return "-".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["tfidf_logreg", "embed_logreg"],
                    choices=["tfidf_logreg", "embed_logreg", "ensemble", "setfit", "transformer"])
    ap.add_argument("--repeats", type=int, default=1, help="training runs per family (seeds seed..seed+n-1)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with BANKING77 train.csv and test.csv")
    ap.add_argument("--taxonomy", type=Path, default=ROOT / "conf" / "taxonomy" / "banking77.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "classifiers.json")
    ap.add_argument("--train-subsample", type=int, default=None,
                    help="train on a stratified sample of this many rows (slow families on CPU)")
    ap.add_argument("--max-train-steps", type=int, default=None,
                    help="cap optimizer steps for setfit / transformer (their max_steps)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (encoder-based families)")
    ap.add_argument("--param", action="append", metavar="KEY=VALUE",
                    help="override a conf/model hyperparameter for every family run, dotted for nested ones "
                         "(members.0.backend=onnx; repeatable)")
    ap.add_argument("--latency-calls", type=int, default=200)
    ap.add_argument("--no-topic-model", action="store_true", help="skip the model trained directly on topics")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    import logging

    # the library's progress lines and training curves are INFO log records when stderr is not a terminal
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for f in ("train.csv", "test.csv"):
        if not (args.data / f).is_file():
            raise SystemExit(f"{args.data / f} not found: pass --data pointing at the BANKING77 folder")

    results: dict[str, Any] = {}
    if args.out.is_file():
        results = json.loads(args.out.read_text()).get("results", {})
    ok = True
    for family in args.families:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            try:
                res = pool.submit(run_family, family, args).result()
            except (Exception, SystemExit) as e:  # report and go on with the other families
                print(f"[{family}] failed: {type(e).__name__}: {e}", file=sys.stderr)
                ok = False
                continue
        res["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        res["settings"] = {"train_subsample": args.train_subsample, "max_train_steps": args.max_train_steps,
                           "device": args.device, "repeats": args.repeats, "latency_calls": args.latency_calls}
        results[settings_key(family, args)] = res
        print(f"[{family}] {json.dumps(res['summary'])} peak_rss_mb={res['peak_rss_mb']}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "dataset": "banking77 train.csv -> test.csv", "taxonomy": str(args.taxonomy.relative_to(ROOT))
            if args.taxonomy.is_relative_to(ROOT) else str(args.taxonomy),
            "machine": {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
                        "platform": platform.platform()},
            "results": results}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
