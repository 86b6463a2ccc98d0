"""Ingest + clean throughput and peak memory on 100,000 tickets of realistic length.

    .venv/bin/python benchmarks/bench_ingest_clean.py [--rows 100000] [--repeats 3]

Builds a CSV by repeating BANKING77 texts and the helpdesk-synthetic e-mail bodies (with their
literal \\n sequences, greetings and sign-offs), then times `ingest.read_tickets` +
`data.clean_tickets` (the two DVC stages' library calls) and reports tickets/s (median of the
repeats) and peak RSS. Writes benchmarks/results/ingest_clean.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def build_csv(path: Path, rows: int) -> None:
    texts: list[tuple[str, str, str]] = []
    with (SHARED / "banking77" / "train.csv").open(newline="") as f:
        texts += [("", r["text"], r["category"]) for r in csv.DictReader(f)]
    with (SHARED / "helpdesk-synthetic" / "tickets.csv").open(newline="", encoding="utf-8") as f:
        texts += [(r["subject"], r["body"], "card_arrival") for r in csv.DictReader(f)]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "subject", "body", "tags"])
        for i in range(rows):
            s, b, t = texts[i % len(texts)]
            w.writerow([f"t{i}", s, f"{b} (#{i})", t])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ingest_clean.json"))
    args = ap.parse_args()

    from ticket_triage.data import clean_tickets
    from ticket_triage.ingest.readers import read_tickets
    from ticket_triage.taxonomy import load_taxonomy

    tax = load_taxonomy(ROOT / "conf" / "taxonomy" / "banking77.yaml")
    runs = []
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "tickets.csv"
        build_csv(src, args.rows)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            tickets, rejected, _ = read_tickets(src, "csv", {"id": "id", "subject": "subject", "body": "body", "tags": "tags"})
            t1 = time.perf_counter()
            kept, aside, rej, rep = clean_tickets(tickets, tax, {"dedupe": True})
            t2 = time.perf_counter()
            assert rep.conserved and len(tickets) + len(rejected) == args.rows
            runs.append({"ingest_s": t1 - t0, "clean_s": t2 - t1, "total_s": t2 - t0})
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    result = {
        "rows": args.rows, "repeats": args.repeats,
        "ingest_tickets_per_s": args.rows / med["ingest_s"],
        "clean_tickets_per_s": args.rows / med["clean_s"],
        "ingest_clean_tickets_per_s": args.rows / med["total_s"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, {platform.python_version()}",
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
