"""Benchmark `triage monitor` (ticket_triage.monitoring.continuous.run_continuous_eval) over 10,000
recent tickets.

Recent traffic: BANKING77's published test.csv (3,080 texts) repeated with small variations
(greetings, sign-offs, a swapped letter) up to --n tickets, spread over four weeks of
created_at. Each is written as a raw ticket (``subject`` empty, ``body``), as an export of
the helpdesk would be, so the evaluator cleans it with the bundle's cleaning before deciding
(until 2026-12-06 the benchmark wrote ``text``, which the evaluator takes as already cleaned:
greetings then reached the models). Bundle: --bundle, else artifacts/train/winner, else a TF-IDF bundle trained here
on the project's split through the library. Each run is a fresh process (as the CLI would
be), writing to a temporary folder; the history folder is shared, so runs after the first
also bootstrap the comparison with the previous run. The label-noise audit is recomputed in
every run (its cache lives in the per-run output folder). Median of --repeats runs, written
to benchmarks/results/eval.json (one entry per bundle family).

    python benchmarks/bench_eval.py
    python benchmarks/bench_eval.py --bundle artifacts/train/candidates/embed_logreg-topic

Not a test: minutes on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("TRIAGE_DATASETS", "/work/shared/datasets")) / "banking77" / "test.csv"
PREFIX = ["", "Hi, ", "Hello team, ", "Quick question: ", "Good morning. ", "Hey! "]
SUFFIX = ["", " Thanks.", " Please help!", " (sent from my phone)", " Thank you in advance.", " Cheers"]


def make_recent(src: Path, n: int, out: Path, seed: int = 0) -> int:
    """Write ``n`` raw tickets (id, subject, body, created_at) built from ``src`` texts with
    variations. The swapped letters keep the texts distinct after cleaning (which removes the
    greetings and sign-offs): the service and the evaluator cache embeddings, and a repeated
    text is not a measurement (``distinct_cleaned`` in the results says how many are)."""
    import random

    with src.open(newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    if not texts:
        raise SystemExit(f"{src} has no rows with a 'text' column (BANKING77 test.csv as published)")
    rng = random.Random(seed)
    start = datetime(2025, 3, 3, tzinfo=timezone.utc)
    with out.open("w", encoding="utf-8") as f:
        for i in range(n):
            t = texts[i % len(texts)]
            if i >= len(texts):  # repeats get variations: 1-3 swapped letters, a greeting, a sign-off
                for _ in range(rng.randint(1, 3)) if len(t) > 8 else ():
                    j = rng.randrange(1, len(t) - 2)
                    t = t[:j] + t[j + 1] + t[j] + t[j + 2:]
                t = rng.choice(PREFIX) + t + rng.choice(SUFFIX)
            created = start + timedelta(seconds=int(rng.random() * 28 * 86400))
            f.write(json.dumps({"id": f"recent-{i:05d}", "subject": "", "body": t,
                                "created_at": created.isoformat()}) + "\n")
    return n


def _distinct_cleaned(path: Path) -> int:
    """How many of the tickets in ``path`` differ after the default cleaning."""
    from ticket_triage.text.clean import CleanConfig

    clean = CleanConfig()
    with path.open(encoding="utf-8") as f:
        return len({clean.apply(r.get("subject", ""), r.get("body", "")) for r in map(json.loads, f)})


def train_tfidf_bundle(params: dict[str, Any], out: Path) -> Path:
    """A TF-IDF bundle trained on the project's train split, policy fitted on validation."""
    from ticket_triage.data import iter_jsonl
    from ticket_triage.decision.bundle import build_bundle
    from ticket_triage.models import build_classifier

    split = Path(params["paths"]["split"])
    if not (split / "train.jsonl").is_file():
        raise SystemExit(f"no {split}/train.jsonl: run `dvc repro split` first, or pass --bundle")
    train = list(iter_jsonl(split / "train.jsonl"))
    val = list(iter_jsonl(split / "validation.jsonl"))
    import yaml

    hp = yaml.safe_load((ROOT / "conf" / "model" / "tfidf_logreg.yaml").read_text()) or {}
    hp.pop("family", None)
    clf = build_classifier("tfidf_logreg", **hp)
    clf.fit([r["text"] for r in train], [r["topic"] for r in train], progress=False)
    return build_bundle(clf, train, val, params, out, model_version="bench-tfidf")


def one_run(bundle: str, recent: str, out_dir: str, history_dir: str) -> dict[str, Any]:
    """One evaluation in this (fresh) process; returns wall time and the phase timings."""
    os.chdir(ROOT)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ticket_triage.config import load_params
    from ticket_triage.monitoring.continuous import run_continuous_eval

    import resource

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    res = run_continuous_eval(load_params(), bundle_dir=bundle, recent_path=recent, out_dir=out_dir,
                              history_dir=history_dir, track=False)
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "timings": res["timings"], "status": res["status"],
            "family": res["family"], "n_recent": res["data"]["recent"], "drift": res["drift"]["status"],
            "compared": res["comparison"] is not None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="bundle folder (default: artifacts/train/winner, else train TF-IDF)")
    ap.add_argument("--train-tfidf", action="store_true", help="benchmark a TF-IDF bundle trained here")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "eval.json")
    args = ap.parse_args()
    os.chdir(ROOT)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ticket_triage.config import load_params

    params = load_params()
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        tmp_path = Path(tmp)
        recent = tmp_path / "recent.jsonl"
        make_recent(args.data, args.n, recent)
        distinct = _distinct_cleaned(recent)
        print(f"recent traffic: {distinct:,} distinct texts after cleaning of {args.n:,}", flush=True)
        winner = Path(params["paths"]["train"]) / "winner"
        if args.bundle:
            bundle, how = Path(args.bundle), "given"
        elif (winner / "policy.json").is_file() and not args.train_tfidf:
            bundle, how = winner, "artifacts/train/winner"
        else:
            t0 = time.perf_counter()
            bundle = train_tfidf_bundle(params, tmp_path / "bundle")
            how = f"tfidf trained for the benchmark ({time.perf_counter() - t0:.0f}s, not timed below)"
        print(f"bundle: {bundle} ({how}); recent traffic: {args.n} tickets", flush=True)
        runs = []
        for i in range(args.repeats):
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as ex:
                r = ex.submit(one_run, str(bundle), str(recent), str(tmp_path / f"out{i}"),
                              str(tmp_path / "history")).result()
            r["load_avg_1m"] = round(os.getloadavg()[0], 2)
            runs.append(r)
            print(f"run {i + 1}: {r['seconds']:.1f}s wall, {r['cpu_seconds']:.1f} CPU-s "
                  f"(load {r['load_avg_1m']}) {r['timings']}", flush=True)
    median = statistics.median(r["seconds"] for r in runs)
    entry = {"family": runs[0]["family"], "bundle": str(bundle), "bundle_source": how, "n_recent": args.n,
             "median_seconds": median, "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
             "distinct_cleaned": distinct, "runs": runs, "budget_seconds": 120, "within_budget": median <= 120,
             "cpus": len(os.sched_getaffinity(0)), "python": sys.version.split()[0],
             "machine": platform.machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[entry["family"]] = entry
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{entry['family']}: median {median:.1f}s over {args.repeats} runs of {args.n} tickets "
          f"({'within' if entry['within_budget'] else 'OVER'} the 120 s budget) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
