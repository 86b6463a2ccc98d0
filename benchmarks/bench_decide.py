"""Where a decision's CPU time goes: ``Triage.decide`` on unseen tickets, split by stage.

For batch sizes 1, 8 and 64 (8 is what the service's micro-batcher forms with 8 concurrent
clients), each repeat takes fresh BANKING77 tickets (train.csv, never seen by the process, so
the embedding cache cannot help) and times, in this order and on the same texts:

* ``clean``: ``Triage.clean`` (HTML, quotes, signatures, PII redaction);
* one ``predict_proba`` per classifier member (for the ensemble: the MiniLM encoder + its
  logistic head, then TF-IDF + logistic regression); the encoder's embeddings are cached here,
  exactly as in ``decide``, where the out-of-scope score and the explanations reuse them;
* ``decide``: the whole decision with that cache cleared first (so the encoder runs again);
* ``rest``: decide minus the members (rules, language, calibration, thresholds, out-of-scope
  kNN, explanations, Decision objects).

It prints ms per batch and per ticket (median of --repeats) and the ceiling they imply for a
single-process service on this machine: ``tickets/s <= 1000 / (ms per ticket)`` at that batch
size, before any HTTP work; Little's law turns that into the lowest possible mean latency for
N closed-loop clients, ``N / throughput``. Writes benchmarks/results/decide.json.

    .venv/bin/python benchmarks/bench_decide.py [--bundle artifacts/train/winner] [--repeats 30]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRIAGE_DATASETS", str(ROOT.parent / "shared" / "datasets")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(ROOT / "artifacts" / "train" / "winner"))
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decide.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not (Path(args.bundle) / "policy.json").is_file():
        ap.error(f"{args.bundle} is not a model bundle: run `make demo` first or pass --bundle")

    from ticket_triage.decision.triage import Triage
    from ticket_triage.models.encoder import EMBEDDING_CACHE
    from ticket_triage.schema import Ticket

    tri = Triage.load(args.bundle)
    clf = tri.classifier
    members = list(getattr(clf, "members", [clf]))
    texts = [r["text"] for r in csv.DictReader((SHARED / "banking77" / "train.csv").open(encoding="utf-8"))]
    pos = 0

    def fresh(n: int) -> list[str]:
        nonlocal pos
        out = [texts[(pos + i) % len(texts)] for i in range(n)]
        pos += n
        return out

    tri.decide([{"subject": "", "body": t} for t in fresh(8)])  # warm-up (sessions, regexes)
    results = {}
    for bs in [int(b) for b in args.batches.split(",")]:
        t = {"clean": [], "decide": [], **{f"member_{i}_{m.family}": [] for i, m in enumerate(members)}}
        for _ in range(args.repeats):
            batch = fresh(bs)
            tickets = [{"subject": "", "body": x} for x in batch]
            s = time.perf_counter()
            cleaned = [tri.clean(Ticket.from_dict({"id": "", **tk})) for tk in tickets]
            t["clean"].append(time.perf_counter() - s)
            for i, m in enumerate(members):
                s = time.perf_counter()
                m.predict_proba(cleaned)
                t[f"member_{i}_{m.family}"].append(time.perf_counter() - s)
            EMBEDDING_CACHE.clear()
            s = time.perf_counter()
            tri.decide(tickets)
            t["decide"].append(time.perf_counter() - s)
        med = {k: statistics.median(v) * 1000 for k, v in t.items()}
        med["rest"] = med["decide"] - sum(v for k, v in med.items() if k.startswith("member_"))
        per = {k: v / bs for k, v in med.items()}
        results[str(bs)] = {"ms_per_batch": {k: round(v, 2) for k, v in med.items()},
                            "ms_per_ticket": {k: round(v, 3) for k, v in per.items()},
                            "ceiling_tickets_per_s": round(1000 / per["decide"], 1)}
        print(f"batch {bs:3d}: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items())
              + f" ms/ticket -> at most {1000 / per['decide']:.0f} tickets/s before HTTP", flush=True)
    ceiling8 = results.get("8", {}).get("ceiling_tickets_per_s")
    if ceiling8:
        print(f"8 closed-loop clients: mean latency >= 8 / {ceiling8:.0f}/s = {8000 / ceiling8:.1f} ms "
              "(decision work alone, no HTTP, no client)")
    out = {"bundle": str(args.bundle), "family": tri.policy.family,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "repeats": args.repeats,
           "batches": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
