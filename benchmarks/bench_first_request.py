"""The first request after start-up: what a fresh service pays before it answers.

Starts ``bentoml serve`` (``SERVE_OPTIONS`` as ``make serve``) on a free loopback port, waits for
/readyz, then times the first POST /classify and the next five (each an unseen BANKING77 test
text, so the embedding cache cannot help), and stops the server. ``--rounds`` fresh servers per
variant; with ``--compare-serving DIR`` (a ``serving/`` folder of another checkout, e.g. a
``git worktree`` of an older commit) the rounds alternate between the two, same bundle, same
library. Medians are reported; the machine is stated in the JSON.

    git worktree add /tmp/tt-old a835120
    .venv/bin/python benchmarks/bench_first_request.py --bundle artifacts/train/winner \\
        --compare-serving /tmp/tt-old/serving --rounds 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRIAGE_DATASETS", str(ROOT.parent / "shared" / "datasets")))


def one_round(serving: Path, bundle: Path, texts: list[str],
              target: str = "service:TicketTriage") -> dict[str, float]:
    import httpx

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_service import _free_port, stop_server

    from ticket_triage.service.packaging import SERVE_OPTIONS

    with tempfile.TemporaryDirectory() as d:
        port = _free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRIAGE_BUNDLE": str(bundle.resolve()),
               "TRIAGE_REVIEW_DB_URL": f"sqlite:///{Path(d) / 'review.sqlite'}"}
        log = (Path(d) / "serve.log").open("wb")
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(Path(sys.executable).parent / "bentoml"), "serve", target,
                                 "--host", "127.0.0.1", "--port", str(port), *SERVE_OPTIONS],
                                cwd=serving, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=url, timeout=60) as c:
                while True:
                    if proc.poll() is not None:
                        raise SystemExit((Path(d) / "serve.log").read_text(errors="replace")[-3000:])
                    try:
                        if c.get("/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.2)
                ready_s = time.perf_counter() - t0
                times = []
                for text in texts:
                    t = time.perf_counter()
                    r = c.post("/classify", json={"subject": "", "body": text})
                    times.append((time.perf_counter() - t) * 1000)
                    if r.status_code != 200:
                        raise SystemExit(f"/classify answered {r.status_code}: {r.text[:300]}")
        finally:
            stop_server(proc)
            log.close()
    return {"ready_s": ready_s, "first_ms": times[0], "next_median_ms": statistics.median(times[1:])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=str(ROOT / "artifacts" / "train" / "winner"))
    ap.add_argument("--compare-serving", default=None, metavar="DIR",
                    help="another checkout's serving/ folder, alternated with this one's")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--floor", action="store_true",
                    help="also alternate the floor service (benchmarks/floor_service.py: the same HTTP surface, "
                         "a canned decision): what the first request costs with no triage behind it")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "first_request.json"))
    args = ap.parse_args(argv)
    with (SHARED / "banking77" / "test.csv").open(encoding="utf-8") as f:
        pool = [r["text"] for r in csv.DictReader(f)]
    variants = {"this": ROOT / "serving"}
    if args.compare_serving:
        variants["compared"] = Path(args.compare_serving)
    if args.floor:
        variants["floor"] = ROOT / "benchmarks"
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    k = 0
    for i in range(args.rounds):
        for name, serving in variants.items():
            texts, k = pool[k:k + 6], k + 6  # unseen by every server: no two rounds share a text
            r = one_round(serving, Path(args.bundle), texts,
                          "floor_service:TicketTriageFloor" if name == "floor" else "service:TicketTriage")
            runs[name].append(r)
            print(f"round {i + 1} {name}: ready {r['ready_s']:.1f} s, first /classify {r['first_ms']:.0f} ms, "
                  f"next {r['next_median_ms']:.1f} ms", flush=True)
    summary = {name: {key: round(statistics.median(r[key] for r in rs), 2) for key in rs[0]} for name, rs in runs.items()}
    out = {"bundle": args.bundle, "variants": {k: str(v) for k, v in variants.items()}, "rounds": args.rounds,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "median": summary, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(summary))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
