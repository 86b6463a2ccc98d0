"""Encoder throughput: how the ONNX backend cuts its texts into ``session.run`` calls.

``OnnxSentenceEncoder`` sorts texts longest first and cuts them into runs of at most
``batch_size`` texts and about ``TOKENS_PER_RUN`` (256) padded tokens. Before, it cut them into
batches of 64 whatever their length. This times, in the same process and on the same fresh
texts, alternating the order every repeat:

* ``bare_fp32``: a bare sentence-transformers MiniLM fp32 encode (batch 64), the baseline of
  every ratio in benchmarks/README.md;
* ``int8_batches_of_64``: the int8 ONNX encoder as it was (one run per 64 texts);
* ``int8_runs_of_256_tokens``: the int8 ONNX encoder as it is now.

Data (``--data``): ``banking77`` (BANKING77 train and test, 13,083 texts, short) and ``github`` (the NLBSE'24 GitHub
issues of react and vscode, train and test, 1,200 texts, long: cleaned with the GitHub-issues config, cut at the
encoder's 256 tokens). ``--group`` texts per call (default 256 for BANKING77, 64 for GitHub
issues; the cascade hands the encoder ~30 texts per 256-ticket batch: try ``--group 32``).
Every repeat takes texts no earlier repeat used; the encoders cache nothing. Median of
``--repeats``. Run timed benchmarks under the shared lock:

    flock /tmp/tt-bench.lock .venv/bin/python benchmarks/bench_encoder.py [--data banking77 github]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRIAGE_DATASETS", str(ROOT.parent / "shared" / "datasets")))


def _texts(name: str) -> list[str]:
    if name == "banking77":
        return [r["text"] for split in ("train", "test")
                for r in csv.DictReader((SHARED / "banking77" / f"{split}.csv").open(encoding="utf-8"))]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_quality import load_dataset

    from ticket_triage.config import compose

    out: list[str] = []
    for repo in ("react", "vscode"):
        train, test, _ = load_dataset(repo, compose([], root=ROOT), 42)
        out += [r["text"] for r in train + test]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", choices=["banking77", "github"], default=["banking77", "github"])
    ap.add_argument("--group", type=int, default=0, help="texts per encode call (0: 256 BANKING77, 64 GitHub)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "encoder_runs.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np

    from ticket_triage.models.encoder import DEFAULT_ENCODER, load_sentence_encoder, resolve_encoder
    from ticket_triage.models.onnx_encoder import TOKENS_PER_RUN, OnnxSentenceEncoder

    bare = load_sentence_encoder()
    int8 = OnnxSentenceEncoder(resolve_encoder(DEFAULT_ENCODER), "onnx-int8")
    int8.encode(["warm up"] * 4)
    bare.encode(["warm up"] * 4, batch_size=64)

    def as_before(texts):
        int8.tokens_per_run = 10 ** 9  # batches of 64, as before
        try:
            return int8.encode(texts, batch_size=64)
        finally:
            int8.tokens_per_run = TOKENS_PER_RUN

    ways = {"bare_fp32": lambda t: bare.encode(t, batch_size=64),
            "int8_batches_of_64": as_before,
            "int8_runs_of_256_tokens": lambda t: int8.encode(t, batch_size=64)}
    results = {}
    for name in args.data:
        pool = _texts(name)
        group = args.group or (256 if name == "banking77" else 64)
        need = group * len(ways) * args.repeats
        if need > len(pool):
            ap.error(f"{name}: {need} fresh texts needed, {len(pool)} available: lower --group or --repeats")
        rng = np.random.default_rng(0)
        order = [pool[i] for i in rng.permutation(len(pool))]
        lens = [len(e.ids) for e in int8.tokenizer.encode_batch(order[:need])]
        runs: dict[str, list[float]] = {k: [] for k in ways}
        pos = 0
        for rep in range(args.repeats):
            names = list(ways) if rep % 2 == 0 else list(ways)[::-1]
            for way in names:
                texts = order[pos:pos + group]
                pos += group
                s = time.perf_counter()
                ways[way](texts)
                runs[way].append(group / (time.perf_counter() - s))
            print(f"{name} repeat {rep + 1}/{args.repeats}: "
                  + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in runs.items()), flush=True)
        med = {k: round(statistics.median(v), 1) for k, v in runs.items()}
        results[name] = {"group": group, "texts": len(pool), "tokens_mean": round(float(np.mean(lens)), 1),
                         "tokens_max": int(max(lens)), "texts_per_s_median": med,
                         "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
                         "ratio_runs_to_batches": round(med["int8_runs_of_256_tokens"] / med["int8_batches_of_64"], 2),
                         "ratio_runs_to_bare_fp32": round(med["int8_runs_of_256_tokens"] / med["bare_fp32"], 2)}
        print(name, json.dumps({k: results[name][k] for k in ("texts_per_s_median", "ratio_runs_to_batches",
                                                              "ratio_runs_to_bare_fp32")}))
    out = {"protocol": __doc__.split("\n\n")[0], "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible",
           "threads": os.environ.get("TRIAGE_TORCH_THREADS", "all visible CPUs"), "repeats": args.repeats,
           "tokens_per_run": TOKENS_PER_RUN, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
