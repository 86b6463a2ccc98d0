"""Quality on long, real tickets: GitHub issues per repository (NLBSE'24) and helpdesk e-mail queues.

Data (``../shared/datasets``):

* ``react`` / ``vscode``: the bundled NLBSE'24 GitHub issues (bug / feature / question), one
  model per repository, trained on that repository's rows of ``train.csv`` (300 issues) and
  measured on its rows of ``test.csv`` (300 issues): the competition's protocol. The published
  SetFit baseline is quoted next to it (react 0.8718, vscode 0.8262 macro-F1).
* ``helpdesk``: ``helpdesk-synthetic/tickets.csv`` (1,872 English and German e-mails), the
  ``queue`` label (10 departments); no dates, so a stratified 70 / 10 / 20 train / validation /
  test split (seed 42). Synthetic and noisy: not a real-world accuracy.

Every ticket goes through the clean stage's ``clean_tickets`` (the same cleaning as the
pipeline), the configured data mapping (``conf/data/github_issues.yaml``,
``conf/data/helpdesk_synthetic.yaml``) and a taxonomy made from the labels.

For each family two figures:

1. **macro-F1 / accuracy** of a classifier fitted on the whole train split (the protocol), argmax;
2. **the decision policy** (what a deployment does): a bundle built by ``build_bundle`` (the
   train stage's path: calibration, thresholds tuned on a stratified 10% validation hold-out of
   train (+ cross-fitted scores), out-of-scope cut-off, the rules ``--rules``, languages), then
   ``Triage.decide`` on test: the share auto-routed, its precision, the draft / review shares and
   the review reasons.

    python benchmarks/bench_quality.py [--family tfidf_logreg --family ensemble] [--datasets react,vscode,helpdesk]
                                       [--set model.C=5] [--rules generic] [--out benchmarks/results/quality.json]

``--family`` is repeatable (default: tfidf_logreg, embed_logreg, ensemble; any family in
``conf/model/``, e.g. setfit, transformer); ``--set`` passes Hydra overrides to every family's
composition (``model.<hyperparameter>=value``, ``thresholds.<key>=value``). Prints a markdown
table; writes the JSON (``--out``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRIAGE_DATASETS", str(ROOT.parent / "shared" / "datasets")))
SETFIT_BASELINE = {"react": 0.8718, "vscode": 0.8262}
DEFAULT_FAMILIES = ("tfidf_logreg", "embed_logreg", "ensemble")
DATASETS = ("react", "vscode", "helpdesk")


def _taxonomy(labels: list[str], name: str) -> dict:
    import re

    topics = [{"id": re.sub(r"[^a-z0-9]+", "_", lab.lower()).strip("_"), "description": f"Tickets labelled {lab!r}.",
               "examples": [f"a {lab} ticket", f"another {lab} ticket", f"a third {lab} ticket"], "maps_from": [lab]}
              for lab in sorted(set(labels))]
    return {"name": name, "version": 1, "topics": topics,
            "urgency": [{"id": p, "description": p} for p in ("P0", "P1", "P2", "P3")]}


def _stratified(rows: list[dict], fracs: tuple[float, ...], seed: int) -> list[list[dict]]:
    """Split rows per topic into len(fracs) parts (fractions of each label)."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["topic"]].append(r)
    rng = random.Random(seed)
    parts: list[list[dict]] = [[] for _ in fracs]
    for lab in sorted(by):
        items = by[lab][:]
        rng.shuffle(items)
        start = 0
        for k, f in enumerate(fracs):
            end = len(items) if k == len(fracs) - 1 else start + max(1, round(len(items) * f))
            parts[k] += items[start:end]
            start = end
    return parts


def load_dataset(name: str, params: dict, seed: int) -> tuple[list[dict], list[dict], dict]:
    """(train rows, test rows, taxonomy) after the clean stage's cleaning and relabelling."""
    from ticket_triage.config import compose
    from ticket_triage.data import clean_tickets
    from ticket_triage.ingest.readers import read_tickets
    from ticket_triage.taxonomy import parse_taxonomy

    clean_cfg = {**params.get("clean", {}), "dedupe": False}
    if name in ("react", "vscode"):
        data = compose(["data=github_issues"], root=ROOT)["data"]
        out = []
        for split in ("train", "test"):
            path = SHARED / "github-issues" / f"{split}.csv"
            tickets, _, _ = read_tickets(path, "csv", data["mapping"])
            out.append([t for t in tickets if (t.channel or "").endswith("/" + name)])
        labels = [t.topic for t in out[0]]
        tax = _taxonomy(labels, f"github-{name}")
        train, *_ = clean_tickets(out[0], parse_taxonomy(tax), clean_cfg)
        test, *_ = clean_tickets(out[1], parse_taxonomy(tax), clean_cfg)
        return train, test, tax
    if name == "helpdesk":
        data = compose(["data=helpdesk_synthetic"], root=ROOT)["data"]
        tickets, _, _ = read_tickets(SHARED / "helpdesk-synthetic" / "tickets.csv", "csv", data["mapping"])
        tax = _taxonomy([t.topic for t in tickets if t.topic], "helpdesk-queues")
        rows, *_ = clean_tickets(tickets, parse_taxonomy(tax), clean_cfg)
        train, val, test = _stratified(rows, (0.7, 0.1, 0.2), seed)
        return train + val, test, tax
    raise SystemExit(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")


def _macro(y: list[str], p: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"macro_f1": float(f1_score(y, p, average="macro")), "accuracy": float(accuracy_score(y, p))}


def run_family(family: str, dataset: str, overrides: list[str], seed: int) -> dict:
    from ticket_triage.config import compose
    from ticket_triage.decision.bundle import build_bundle
    from ticket_triage.decision.triage import Triage
    from ticket_triage.metrics import auto_route_metrics
    from ticket_triage.models import build_classifier

    params = compose([f"model={family}", *overrides], root=ROOT)
    train, test, tax = load_dataset(dataset, params, seed)
    params["taxonomy"] = tax
    hp = {k: v for k, v in params["model"].items() if k != "family"}
    texts, y = [r["text"] for r in train], [r["topic"] for r in train]
    y_test = [r["topic"] for r in test]
    res: dict = {"family": family, "dataset": dataset, "train": len(train), "test": len(test),
                 "labels": dict(sorted(Counter(y).items()))}

    t0 = time.perf_counter()
    clf = build_classifier(family, **hp).fit(texts, y, progress=False)
    res["fit_s"] = round(time.perf_counter() - t0, 1)
    res.update(_macro(y_test, clf.predict([r["text"] for r in test])))

    fit_rows, val_rows = _stratified(train, (0.9, 0.1), seed)
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as d:
        clf2 = build_classifier(family, **hp)
        kw = {}
        if getattr(clf2, "uses_validation", False):  # fine-tuned families stop early on the hold-out
            kw["validation"] = ([r["text"] for r in val_rows], [r["topic"] for r in val_rows])
        clf2.fit([r["text"] for r in fit_rows], [r["topic"] for r in fit_rows], progress=False, **kw)
        bundle = build_bundle(clf2, fit_rows, val_rows, params, Path(d) / "b", label_level="topic",
                              model_version=f"bench-quality-{family}-{dataset}")
        tri = Triage.load(bundle)
        tickets = [{"id": r["id"], "text": r["text"], "language": r.get("language") or "", "subject": "", "body": ""}
                   for r in test]
        ds = tri.decide(tickets)
        without = None
        if tri.cascade is not None:  # the same bundle with the cascade off, on the same tickets
            ds_off = Triage.load(bundle, cascade=False).decide(tickets)
            m_off = auto_route_metrics([x.band for x in ds_off], y_test, [x.topic for x in ds_off])
            without = {"auto_share": m_off["coverage"], "auto_n": m_off["auto_n"],
                       "auto_precision": None if m_off["auto_precision"] != m_off["auto_precision"]
                       else m_off["auto_precision"]}
    m = auto_route_metrics([x.band for x in ds], y_test, [x.topic for x in ds])
    prec = m["auto_precision"]
    policy = {"auto_share": m["coverage"], "auto_n": m["auto_n"], "auto_precision": None if prec != prec else prec,
              "bands": dict(Counter(x.band for x in ds)),
              "review_reasons": dict(Counter(x.reason.split(":")[0] for x in ds if x.band == "review")),
              **{f"decided_{k}": v for k, v in _macro(y_test, [x.topic or "" for x in ds]).items()}}
    if without is not None:  # thresholds.cascade.enabled=true: which stage decided, and the plain model
        cheap = [x.topic == yt for x, yt in zip(ds, y_test) if x.explanation.get("stage") == "cheap"]
        policy["cascade"] = {"cheap_share": len(cheap) / max(1, len(ds)),
                             "cheap_precision": sum(cheap) / len(cheap) if cheap else None,
                             "without_cascade": without}
    res["policy"] = policy
    if dataset in SETFIT_BASELINE:
        res["setfit_baseline_macro_f1"] = SETFIT_BASELINE[dataset]
    return res


def _table(rows: list[dict]) -> str:
    out = ["| data | family | macro-F1 (train → test) | SetFit baseline | accuracy | auto-routed | its precision "
           "| review | review reasons |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        p = r["policy"]
        n = max(1, r["test"])
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(p["review_reasons"].items(), key=lambda kv: -kv[1]))
        prec = p["auto_precision"]
        out.append(f"| {r['dataset']} ({r['train']} / {r['test']}) | {r['family']} | {r['macro_f1']:.4f} | "
                   f"{r.get('setfit_baseline_macro_f1', '—')} | {r['accuracy']:.3f} | {p['auto_share']:.1%} | "
                   f"{'—' if prec is None else f'{prec:.1%}'} | {p['bands'].get('review', 0) / n:.1%} | "
                   f"{reasons or '—'} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--family", action="append", default=[],
                    help=f"model family (conf/model/<family>.yaml), repeatable; default {', '.join(DEFAULT_FAMILIES)}")
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: react, vscode, helpdesk")
    ap.add_argument("--rules", default="generic", help="conf/rules/<name>.yaml applied by the decision policy")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="Hydra override for every composition, e.g. --set model.C=5 (repeatable)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    families = args.family or list(DEFAULT_FAMILIES)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    overrides = [f"rules={args.rules}", *args.set]
    rows = []
    for ds in datasets:
        for fam in families:
            print(f"[quality] {ds} / {fam} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            r = run_family(fam, ds, overrides, args.seed)
            r["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(r)
            p = r["policy"]
            print(f"[quality] {ds} / {fam}: macro-F1 {r['macro_f1']:.4f}, auto-routed {p['auto_share']:.1%} "
                  f"at {p['auto_precision'] if p['auto_precision'] is not None else float('nan'):.1%} "
                  f"({r['seconds']} s)", file=sys.stderr, flush=True)
            if "cascade" in p:
                c, w = p["cascade"], p["cascade"]["without_cascade"]
                print(f"[quality] {ds} / {fam}: cascade decided {c['cheap_share']:.1%} cheaply; without it "
                      f"{w['auto_share']:.1%} auto-routed at "
                      f"{w['auto_precision'] if w['auto_precision'] is not None else float('nan'):.1%}",
                      file=sys.stderr, flush=True)
    cpu = subprocess.run(["bash", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    res = {"command": " ".join(["bench_quality.py", *(argv if argv is not None else sys.argv[1:])]),
           "overrides": overrides, "seed": args.seed, "rows": rows,
           "machine": {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
                       "note": "shared with other engineers' jobs"},
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2, default=str))
    print(_table(rows))
    by_fam: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["dataset"] in SETFIT_BASELINE:
            by_fam[r["family"]].append(r["macro_f1"])
    for fam, v in by_fam.items():
        if len(v) == 2:
            print(f"{fam}: NLBSE mean macro-F1 {sum(v) / 2:.4f} (SetFit baseline "
                  f"{sum(SETFIT_BASELINE.values()) / 2:.4f})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
