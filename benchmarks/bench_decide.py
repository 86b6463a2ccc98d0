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

Then the cascade throughput (``--throughput-batch``, default 256; ``--throughput-repeats``,
default 3, median reported): each repeat takes ``--throughput-tickets`` fresh texts of BANKING77
test.csv (unseen by the bundle and by the process) and
times, in the same run on the same texts, (a) a bare sentence-transformers MiniLM fp32 encode
(batch 64, the baseline every ratio is against), (b) ``decide`` with the bundle's cascade and
(c) ``decide`` with it off (``Triage.load(..., cascade=False)``), each in batches of the
throughput batch size, the embedding cache cleared before each; plus the share of tickets the
cheap stage decided; and (d), with ``--workers N`` (default 2), the cascade decide on N worker
processes (``DecisionPool``, what ``triage score --workers N`` runs; frames of the throughput
batch size, pickling both ways included; the workers have never seen the texts), with the
share of its decisions that match (a)'s topic and band. Run timed benchmarks under the shared lock:

    flock /tmp/tt-bench.lock .venv/bin/python benchmarks/bench_decide.py [--bundle artifacts/train/winner]
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
    ap.add_argument("--throughput-batch", type=int, default=256)
    ap.add_argument("--throughput-tickets", type=int, default=1016,
                    help="fresh tickets per repeat (test.csv holds 3,080: 32 warm-up + 3 x 1,016)")
    ap.add_argument("--throughput-repeats", type=int, default=3)
    ap.add_argument("--skip-stages", action="store_true", help="only the cascade throughput section")
    ap.add_argument("--workers", type=int, default=2,
                    help="also time the cascade decide on this many worker processes "
                         "(ticket_triage.batch.pool.DecisionPool, as `triage score --workers N`) on the same "
                         "texts; 0 or 1 skips it")
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
    for bs in ([] if args.skip_stages else [int(b) for b in args.batches.split(",")]):
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
    throughput = _throughput(args, tri)
    out = {"bundle": str(args.bundle), "family": tri.policy.family,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_cpu_model()}; shared with other "
                      "engineers' processes", "repeats": args.repeats,
           "batches": results, "throughput": throughput}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _throughput(args, tri) -> dict:
    """Tickets/s of decide with and without the cascade against a bare MiniLM fp32 encode of the
    same fresh texts, median of --throughput-repeats (see the module docstring)."""
    import numpy as np

    from ticket_triage.decision.triage import Triage
    from ticket_triage.models.encoder import EMBEDDING_CACHE, load_sentence_encoder

    plain = Triage.load(args.bundle, cascade=False) if tri.cascade is not None else tri
    # BANKING77 test.csv: tickets neither the bundle (trained on train.csv) nor this process has seen
    pool = [r["text"] for r in csv.DictReader((SHARED / "banking77" / "test.csv").open(encoding="utf-8"))]
    pos = 0

    def fresh(n: int) -> list[str]:
        nonlocal pos
        out = [pool[(pos + i) % len(pool)] for i in range(n)]
        pos += n
        return out

    st = load_sentence_encoder()
    bs, n = args.throughput_batch, args.throughput_tickets
    st.encode(fresh(16), batch_size=64)
    plain.decide([{"subject": "", "body": t} for t in fresh(16)])
    runs = {"bare_encoder": [], "decide_cascade": [], "decide_full": []}
    shares = []
    dpool, agree = None, []
    if args.workers > 1:
        import pandas as pd

        from ticket_triage.batch.pool import DecisionPool

        dpool = DecisionPool(args.bundle, args.workers, batch_size=bs).warm()
        runs[f"decide_cascade_{args.workers}_workers"] = []

    def timed_pool(texts):
        frames = [pd.DataFrame({"id": [str(i) for i in range(k, min(k + bs, len(texts)))], "body": texts[k:k + bs]})
                  for k in range(0, len(texts), bs)]
        s = time.perf_counter()
        out = pd.concat(list(dpool.map(frames)), ignore_index=True)
        return n / (time.perf_counter() - s), out

    def timed_decide(triage, texts):
        EMBEDDING_CACHE.clear()
        s = time.perf_counter()
        ds = []
        for k in range(0, len(texts), bs):
            ds += triage.decide([{"subject": "", "body": x} for x in texts[k:k + bs]])
        return n / (time.perf_counter() - s), ds

    for rep in range(args.throughput_repeats):
        texts = fresh(n)
        s = time.perf_counter()
        st.encode(texts, batch_size=64)
        runs["bare_encoder"].append(n / (time.perf_counter() - s))
        if tri.cascade is not None:
            tps, ds = timed_decide(tri, texts)
            runs["decide_cascade"].append(tps)
            shares.append(sum(d.explanation.get("stage") == "cheap" for d in ds) / n)
        tps, _ = timed_decide(plain, texts)
        runs["decide_full"].append(tps)
        if dpool is not None:
            tps, frame = timed_pool(texts)
            runs[f"decide_cascade_{args.workers}_workers"].append(tps)
            if tri.cascade is not None:  # the pool decides exactly as this process does
                agree.append(float(np.mean([(d.topic, d.band) == (t, b) for d, t, b
                                            in zip(ds, frame["topic"], frame["band"])])))
        print(f"repeat {rep + 1}/{args.throughput_repeats}: " + ", ".join(
            f"{k} {v[-1]:.0f}/s" for k, v in runs.items() if v), flush=True)
    med = {k: round(statistics.median(v), 1) for k, v in runs.items() if v}
    out = {"batch": bs, "tickets_per_repeat": n, "repeats": args.throughput_repeats,
           "data": "BANKING77 test.csv (unseen by the bundle and by the process; the warm-up takes the first 32)",
           "tickets_per_s_median": med, "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
           "ratio_to_bare_encoder": {k: round(v / med["bare_encoder"], 2) for k, v in med.items() if k != "bare_encoder"}}
    if shares:
        out["cheap_stage_share"] = round(statistics.median(shares), 4)
    if dpool is not None:
        dpool.close()
        out["workers"] = {"processes": args.workers, "threads_per_worker": dpool.threads,
                          "same_topic_and_band_as_one_process": min(agree) if agree else None}
    print("throughput (median): " + json.dumps(out["tickets_per_s_median"]) + " ratio to bare encoder "
          + json.dumps(out["ratio_to_bare_encoder"]) + (f"; cheap stage decided {out['cheap_stage_share']:.1%}"
                                                         if shares else ""), flush=True)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
