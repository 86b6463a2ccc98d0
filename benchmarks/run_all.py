"""Run every benchmark that needs no running server, one after the other (minutes to an hour
on 2 cores). The service benchmark needs `make serve` in another terminal:

    .venv/bin/python benchmarks/bench_service.py --url http://127.0.0.1:3000

Results land in benchmarks/results/*.json; the README's table quotes them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = [
    ["bench_ingest_clean.py"],
    ["bench_classifiers.py", "--families", "tfidf_logreg", "embed_logreg"],
    ["bench_policy.py"],
    ["bench_ood.py"],
    ["bench_decide.py"],  # needs a bundle: artifacts/train/winner after `make demo`
    ["bench_review.py", "--out", str(HERE / "results" / "review.json")],
    ["bench_eval.py"],
]


def main() -> int:
    failed = []
    for step in STEPS:
        print(f"== {' '.join(step)}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / step[0]), *step[1:]])
        if rc:
            failed.append(step[0])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
